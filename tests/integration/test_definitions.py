"""A snapshot of what the code location defines, so an accidental rename shows in review."""

from pathlib import Path

SNAPSHOT = Path(__file__).parent / "definitions_snapshot.txt"


def describe(definitions) -> list[str]:
    graph = definitions.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitioned = "daily" if node.partitions_def else "unpartitioned"
        lines.append(f"asset {key.to_user_string()} group={node.group_name} {partitioned}")
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        lines.append(f"check {check_key.to_user_string()}")
    lines += sorted(f"job {job.name}" for job in definitions.jobs)
    lines += sorted(
        f"schedule {s.name} job={s.job_name} cron={s.cron_schedule}" for s in definitions.schedules
    )
    return lines


def test_definitions_match_the_committed_snapshot(definitions):
    current = "\n".join(describe(definitions)) + "\n"
    if not SNAPSHOT.exists():  # first run writes it; review and commit it
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), (
        f"definitions changed: if intended, delete {SNAPSHOT.name} and rerun to regenerate"
    )


def test_every_asset_has_a_group_and_kinds(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in {
            "ingestion",
            "staging",
            "marts",
            "features",
            "segmentation",
            "value",
            "serving",
        }, key
        assert any(tag.startswith("dagster/kind/") for tag in node.tags), key
