"""``anyware generate``: generate text for prompts (text or token ids) with a local model."""

from __future__ import annotations

import argparse
import sys

from anyware.cli.options import (
    add_model_options,
    add_parser,
    check_preset,
    engine_kwargs,
)


def token_ids(text: str) -> list[int]:
    """``"1,2,3"`` or ``"1 2 3"`` as token ids."""
    try:
        ids = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected token ids separated by commas or spaces, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one token id")
    return ids


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "generate", help="generate text for one or more prompts",
        description=(
            "Generate a completion for each prompt and print it after the prompt. Defaults: the "
            "built-in demo model, greedy decoding (--temperature 0), 64 new tokens. A prompt is "
            "text (--prompt) or token ids (--prompt-ids, needed for presets, which have no "
            "tokenizer); a token-id prompt prints its output as token ids when the model has "
            "no tokenizer."),
    )
    p.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable)")
    p.add_argument("--prompt-ids", action="append", default=[], type=token_ids, metavar="IDS",
                   help="prompt as token ids, e.g. '1,2,3' (repeatable)")
    add_model_options(p)
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate per prompt")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--top-k", type=int, default=-1, help="-1 disables top-k")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-sequence")
    p.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    prompts: list[str | list[int]] = [*args.prompt, *args.prompt_ids]
    if not prompts:
        args._parser.error("give at least one --prompt TEXT or --prompt-ids IDS")
    check_preset(args)
    from anyware.engine.engine import Engine
    from anyware.request.params import SamplingParams

    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, top_k=args.top_k, ignore_eos=args.ignore_eos,
                            seed=args.seed if args.temperature else None)
    with Engine(**engine_kwargs(args), show_progress=False) as engine:
        as_ids = engine.tokenizer is None

        def shown(prompt: str | list[int]) -> str:
            return prompt if isinstance(prompt, str) else (
                " ".join(map(str, prompt)) + " ->" if as_ids else engine.tokenizer.decode(prompt))

        def out_text(o) -> str:
            return " " + " ".join(map(str, o.token_ids)) if as_ids else o.text

        if args.stream:
            for prompt in prompts:
                sys.stdout.write(shown(prompt))
                for delta in engine.stream(prompt, params):
                    sys.stdout.write(out_text(delta.outputs[0]))
                    sys.stdout.flush()
                sys.stdout.write("\n")
            return 0
        for prompt, out in zip(prompts, engine.generate(prompts, params)):
            print(shown(prompt) + out_text(out.outputs[0]))
    return 0
