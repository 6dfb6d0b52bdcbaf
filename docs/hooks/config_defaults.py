"""mkdocs hook: write the run config's defaults into the page that asks for them.

A page holding the line ``<!-- config-defaults -->`` gets, in its place, every section's keys at
their defaults and every option of the five sections that choose one, each with its own keys,
read from ``flowmatch.train.config`` at build time, so the page cannot drift from the schema.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- config-defaults -->"


def _flow(mapping: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(mapping, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _defaults() -> str:
    import yaml

    from flowmatch.train.config import RunConfig, config_to_dict
    from flowmatch.train.config.choices import CHOICES

    whole = yaml.safe_dump(
        config_to_dict(RunConfig()), sort_keys=False, default_flow_style=None, width=95
    )
    options = []
    for section in ("path", "coupling", "time", "objective", "model"):
        choice = CHOICES[section]
        for tag, variant in choice.variants.items():
            options.append(f"{section}: {_flow({choice.key: tag, **variant().params()})}")
    return (
        "Every section at its defaults (what an empty config file trains):\n\n"
        f"```yaml\n{whole}```\n\n"
        "Every option of the five sections that choose one, with its keys at their defaults:\n\n"
        "```yaml\n" + "\n".join(options) + "\n```\n"
    )


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _defaults())
