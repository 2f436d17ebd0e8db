"""Lint-time access to the vars of dbt_project.yml, which the jinja templater's `var` fakes.

`.sqlfluff` overrides the `segment_schemes` macro with `project_vars.segment_schemes`, so the
models are linted with the real scheme list, not a placeholder.
"""

from pathlib import Path

import yaml

_VARS = yaml.safe_load((Path(__file__).parents[1] / "dbt_project.yml").read_text())["vars"]

segment_schemes = _VARS["segment_schemes"]
