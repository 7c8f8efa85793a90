"""``anyware generate``: generate text from a prompt with a local model."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text for one or more prompts")
    p.add_argument("--model", default=None, help="model directory or preset (default: demo model)")
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    p.add_argument("--platform", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--load-format", default="auto", choices=["auto", "safetensors", "dummy"])
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    p.set_defaults(func=run)


def default_model() -> str:
    from pathlib import Path

    import anyware

    return str(Path(anyware.__file__).parent / "assets" / "demo-llama")


def run(args: argparse.Namespace) -> int:
    from anyware.engine.engine import Engine
    from anyware.request.params import SamplingParams

    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    with Engine(args.model or default_model(), platform=args.platform, dtype=args.dtype,
                load_format=args.load_format) as engine:
        if args.stream:
            for prompt in args.prompt:
                sys.stdout.write(prompt)
                for delta in engine.stream(prompt, params):
                    sys.stdout.write(delta.outputs[0].text)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            return 0
        for prompt, out in zip(args.prompt, engine.generate(args.prompt, params)):
            print(prompt + out.outputs[0].text)
    return 0
