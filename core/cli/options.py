"""Options shared by the subcommands: the engine's settings (one spelling, one set of choices,
one default each, in ``serve``, ``generate`` and ``bench``), ``--platform-option KEY=VALUE``,
and the check that a shape preset runs only with ``--load-format dummy``."""

from __future__ import annotations

import argparse
import json

DEMO_MODEL = "anyware-demo"  # anyware.engine.config.DEMO_MODEL (a test checks they agree)
# anyware.model.loader.LOAD_FORMATS (a test checks they agree; the CLI does not import torch
# to build its parser)
LOAD_FORMATS = ("auto", "safetensors", "dummy")
EXECUTIONS = ("auto", "eager", "graphs", "compiled")
QUANTIZATIONS = ("fp8",)  # anyware.plugin.QUANTIZATIONS (a test checks they agree)


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default (``%(default)s``) unless it is ``None``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS or (
            action.default == [] or action.default is False
        ):
            return action.help
        return super()._get_help_string(action)


def add_parser(sub: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand parser with the house conventions: no prefix abbreviations, defaults in the
    help."""
    return sub.add_parser(name, allow_abbrev=False, formatter_class=Formatter, **kwargs)


def _value(text: str):
    """JSON when it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def platform_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _value(value.strip())


def add_platform_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform-option", type=platform_option, action="append", default=[],
        metavar="KEY=VALUE",
        help="platform-specific setting, repeatable (e.g. cuda_graph_max_prefill_tokens=0; "
             "the platform's docs list its keys)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --platform, --dtype, --kv-cache-dtype, --quantization, --load-format, --seed:
    what every engine-building command takes."""
    parser.add_argument(
        "--model", default=DEMO_MODEL, metavar="PATH|PRESET",
        help="Hugging Face model directory, shape preset (random weights, no tokenizer: needs "
             f"--load-format dummy), or '{DEMO_MODEL}' (the built-in demo model)")
    parser.add_argument("--platform", default=None, metavar="NAME",
                        help="platform plugin (default: $ANYWARE_PLATFORM, else the "
                             "highest-priority available one)")
    parser.add_argument("--dtype", default=None,
                        help="model dtype: float32, bfloat16, float16 (default: the platform's)")
    parser.add_argument("--kv-cache-dtype", default=None, metavar="DTYPE",
                        help="KV-cache dtype: auto (the model's), float32, bfloat16, float16, "
                             "or fp8 (e4m3, scale 1.0; also fp8_e4m3, float8_e4m3fn) where the "
                             "attention backend declares it (docs/quantization.md)")
    parser.add_argument("--quantization", "-q", default=None, choices=QUANTIZATIONS,
                        help="quantize the linear layers at load: 'fp8' (W8A8 e4m3: weights per "
                             "output channel, activations per token) where the platform "
                             "declares it (docs/quantization.md)")
    parser.add_argument("--load-format", default="auto", choices=LOAD_FORMATS,
                        help="'dummy': random weights of the model's shapes (required for a "
                             "preset); 'auto'/'safetensors': read the weights")
    parser.add_argument("--seed", type=int, default=0, help="engine random seed")


def add_engine_options(parser: argparse.ArgumentParser, *,
                       max_running_requests: int | None = None, group=None) -> None:
    """The engine's capacity and execution settings (in ``group`` when given: an argument
    group of ``parser``); speculative decoding in a group of its own."""
    add = group if group is not None else parser
    _add_engine_arguments(add, max_running_requests)
    add_platform_option(add)
    add_speculative_options(parser)
    add_parallel_options(parser)


def _add_engine_arguments(parser, max_running_requests: int | None) -> None:
    parser.add_argument("--page-size", type=int, default=None,
                        help="KV-cache page size in tokens (default: the platform's)")
    parser.add_argument("--max-running-requests", type=int, default=max_running_requests,
                        help="most requests in the running batch (default: sized from the KV "
                             "cache, the requests of 2,048 tokens it holds, 256 to 1024; 256 "
                             "where a request's KV is too small to keep the device busy)")
    parser.add_argument("--chunked-prefill-size", type=int, default=2048,
                        help="most prompt tokens prefilled per step")
    parser.add_argument("--schedule-conservativeness", type=float, default=1.0, metavar="C",
                        help="scales the KV kept free for running requests' remaining output "
                             "when admitting new ones (0.7 decaying to 0.1 of it, times this); "
                             "higher: fewer retractions, smaller batches; 0: off")
    parser.add_argument("--context-len", "--max-model-len", dest="context_len", type=int,
                        default=None,
                        help="cap on prompt + completion length (default: the model's; "
                             "--max-model-len is vLLM's name)")
    parser.add_argument("--mem-fraction", "--gpu-memory-utilization", dest="mem_fraction",
                        type=float, default=0.85,
                        help="fraction of device memory for weights + KV cache "
                             "(--gpu-memory-utilization is vLLM's name)")
    parser.add_argument("--disable-radix-cache", action="store_true",
                        help="turn off prefix caching")
    parser.add_argument("--attention-backend", default=None, metavar="NAME",
                        help="attention backend by name (default: the platform's best)")
    parser.add_argument("--execution", default="auto", choices=EXECUTIONS,
                        help="execution strategy ('auto': the platform's)")
    parser.add_argument("--overlap-schedule", action=argparse.BooleanOptionalAction, default=None,
                        help="schedule step N+1 while step N runs (default: on where the device "
                             "runs asynchronously)")


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("parallelism (docs/parallelism.md)")
    g.add_argument("--tensor-parallel-size", "--tp", dest="tensor_parallel_size", type=int,
                   default=1, metavar="N",
                   help="shard the model over N ranks, one process each: spawned here, or "
                        "the processes torchrun started (RANK/WORLD_SIZE set)")
    g.add_argument("--enable-expert-parallel", action="store_true",
                   help="MoE models: shard whole experts over the tensor-parallel ranks "
                        "(all-to-all token dispatch) instead of splitting every expert")
    g.add_argument("--expert-parallel-size", "--ep", dest="expert_parallel_size", type=int,
                   default=None, metavar="N",
                   help="same as --enable-expert-parallel when N equals --tp (expert "
                        "parallelism runs over the tensor-parallel group); 1 turns it off")
    g.add_argument("--nnodes", type=int, default=1,
                   help="hosts the ranks span (without torchrun; each host starts "
                        "--tp/--nnodes ranks)")
    g.add_argument("--node-rank", type=int, default=0, help="this host's index in [0, --nnodes)")
    g.add_argument("--dist-init-addr", default=None, metavar="HOST:PORT",
                   help="where the ranks meet (node 0's address; required with --nnodes > 1)")
    g.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long a collective waits for a rank before the group is "
                        "declared down")


class ExpertParallelSizeError(ValueError):
    pass


def run_if_follower_rank(args: argparse.Namespace) -> int | None:
    """Under torchrun (``RANK > 0``) or on a node other than 0 (``--node-rank``), this process
    is a rank other than 0: run the rank loop (no HTTP, no benchmark) and return its exit
    code; None for rank 0 or a single rank."""
    if getattr(args, "tensor_parallel_size", 1) <= 1:
        return None
    from anyware.engine.config import EngineConfig
    from anyware.engine.rank import follower_placement, serve_rank

    kwargs = engine_kwargs(args)
    cfg = EngineConfig.from_kwargs(kwargs.pop("model"), **kwargs)
    return serve_rank(cfg) if follower_placement(cfg) is not None else None


def parallel_kwargs(args: argparse.Namespace) -> dict:
    tp, ep = args.tensor_parallel_size, args.expert_parallel_size
    if ep not in (None, 1, tp):
        raise ExpertParallelSizeError(
            f"--expert-parallel-size {ep}: expert parallelism runs over the tensor-parallel "
            f"group, so it must be 1 or --tp ({tp})")
    return dict(tensor_parallel_size=tp,
                enable_expert_parallel=args.enable_expert_parallel or (ep == tp and tp > 1),
                nnodes=args.nnodes, node_rank=args.node_rank,
                dist_init_addr=args.dist_init_addr, dist_timeout=args.dist_timeout)


SPECULATIVE_ALGORITHMS = ("ngram", "draft", "eagle3")  # anyware.spec.ALGORITHMS (a test checks)


def add_speculative_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("speculative decoding (docs/speculative.md)")
    g.add_argument("--speculative-algorithm", default=None, choices=SPECULATIVE_ALGORITHMS,
                   help="propose draft tokens and verify them in one target forward: 'ngram' "
                        "(prompt lookup in the request's own tokens), 'draft' (a small model "
                        "with the target's tokenizer, --speculative-draft-model) or 'eagle3' (an "
                        "EAGLE-3 head fed by the target's hidden states, --speculative-draft-model)")
    g.add_argument("--speculative-num-draft-tokens", type=int, default=4, metavar="K",
                   help="draft tokens verified per request per step")
    g.add_argument("--speculative-draft-model", "--speculative-draft-model-path", default=None,
                   metavar="PATH", dest="speculative_draft_model",
                   help="draft model directory (same tokenizer as --model), or the EAGLE-3 "
                        "head's directory with --speculative-algorithm eagle3")
    g.add_argument("--speculative-ngram-min", type=int, default=1, metavar="N",
                   help="shortest n-gram prompt lookup matches")
    g.add_argument("--speculative-ngram-max", type=int, default=4, metavar="N",
                   help="longest n-gram prompt lookup matches (tried first)")
    g.add_argument("--speculative-ngram-tree", action="store_true",
                   help="with --speculative-algorithm ngram: draft a token tree (several "
                        "matches merged into a trie of at most K nodes) that greedy requests "
                        "verify in one step; sampling requests verify its best chain")
    g.add_argument("--speculative-eagle-topk", type=int, default=1, metavar="K",
                   help="with --speculative-algorithm eagle3: children per draft-tree node; 1 "
                        "drafts chains, more draft token trees of at most "
                        "--speculative-num-draft-tokens nodes that greedy requests verify in "
                        "one step")
    g.add_argument("--speculative-acceptance", default="exact", choices=("exact", "rejection"),
                   help="temperature > 0: 'exact' (a draft is kept when it equals the target's "
                        "seeded sample: output identical to no speculation, seed for seed) or "
                        "'rejection' sampling (min(1, p/q), residual resampled); both keep the "
                        "target distribution and, for deterministic drafts, keep as many")
    g.add_argument("--speculative-disable-auto-off", action="store_true",
                   help="always speculate: no automatic pause at batch sizes where the measured "
                        "tokens/s with drafts fall below those without")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """``Engine(**engine_kwargs(args))`` for a parser built with the two functions above."""
    kwargs = dict(model=args.model, platform=args.platform, dtype=args.dtype,
                  kv_cache_dtype=args.kv_cache_dtype, load_format=args.load_format,
                  seed=args.seed, quantization=args.quantization)
    if hasattr(args, "page_size"):
        kwargs.update(
            page_size=args.page_size, max_running_requests=args.max_running_requests,
            chunked_prefill_size=args.chunked_prefill_size, context_len=args.context_len,
            schedule_conservativeness=args.schedule_conservativeness,
            mem_fraction=args.mem_fraction, disable_radix_cache=args.disable_radix_cache,
            attention_backend=args.attention_backend, execution=args.execution,
            overlap_schedule=args.overlap_schedule,
            platform_options=dict(args.platform_option),
        )
    if hasattr(args, "tensor_parallel_size"):
        kwargs.update(parallel_kwargs(args))
    if getattr(args, "tokenizer", None) is not None:
        kwargs.update(tokenizer=args.tokenizer)
    if getattr(args, "speculative_algorithm", None) is not None:
        kwargs.update(
            speculative_algorithm=args.speculative_algorithm,
            speculative_num_draft_tokens=args.speculative_num_draft_tokens,
            speculative_draft_model=args.speculative_draft_model,
            speculative_ngram_min=args.speculative_ngram_min,
            speculative_ngram_max=args.speculative_ngram_max,
            speculative_ngram_tree=args.speculative_ngram_tree,
            speculative_eagle_topk=args.speculative_eagle_topk,
            speculative_acceptance=args.speculative_acceptance,
            speculative_auto_off=not args.speculative_disable_auto_off,
        )
    return kwargs


class PresetNeedsDummyError(ValueError):
    pass


def check_preset(args: argparse.Namespace) -> None:
    """A shape preset has no weights (and no tokenizer): running one without ``--load-format
    dummy`` is an error, so nobody mistakes random output for a real model."""
    from anyware.model.config import PRESETS

    if args.model in PRESETS and args.load_format != "dummy":
        raise PresetNeedsDummyError(
            f"'{args.model}' is a shape preset: it has no weights and no tokenizer. Add "
            f"--load-format dummy to run it with random weights (for benchmarks), or pass a "
            f"Hugging Face model directory as --model.")
