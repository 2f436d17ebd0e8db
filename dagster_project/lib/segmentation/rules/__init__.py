"""Rule-based segment schemes: one module per scheme, each rule next to the reason it gives.

``assign.assign_rule_segments`` and ``assign.explain_rule_segments`` put the schemes together.
"""
