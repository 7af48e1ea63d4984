"""`python -m mattex.exporter.lint` prints docs/commands/check.md's rule table."""

from .check import rules_markdown

print(rules_markdown())
