"""`agentd model list | pull`."""

from __future__ import annotations

import argparse

from agent.cli.common import load_context


def cmd_model_list(args: argparse.Namespace) -> int:
    from agent.config.paths import models_dir
    from agent.llm.catalog import list_models

    _, home = load_context(args)
    models = list_models(models_dir(home))
    if not models:
        print("No models installed. `agentd model pull qwen3.5-4b` downloads the default.")
    for m in models:
        print(f"{m.name:40} {m.size_bytes / 1e9:6.2f} GB  {m.model_type or '?':10} {m.quantization or ''}")
    return 0


def cmd_model_pull(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.config.paths import models_dir
    from agent.llm.catalog import pull

    _, home = load_context(args)
    if args.name == "demo":
        from agent.llm.demo_fetch import pull_demo_model

        path = pull_demo_model(models_dir(home), console=Console(stderr=True))
    else:
        path = pull(args.name, models_dir(home), console=Console(stderr=True))
    print(f"Installed {args.name} in {path}")
    return 0
