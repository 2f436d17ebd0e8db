"""The landing sensor on a real warehouse: nothing to do when every landed day is ingested,
one run request per day whose files changed, the same run key for the same files (Dagster
never launches a key twice), and a run that ingests a day takes it off the list."""

import os

import dagster as dg
from pipeline_sample import END, PREVIOUS

from dagster_project.defs.common import WarehouseResource
from dagster_project.defs.orchestration.sensors import LANDING_SENSOR, TRIGGER_TAG, landing_sensor


def evaluate(home) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.get(),
        resources={"warehouse": WarehouseResource(home=str(home))},
    )
    return landing_sensor(context)


def touch(path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_the_landing_sensor_requests_one_run_per_changed_day(pipeline_copy, definitions):
    assert isinstance(evaluate(pipeline_copy), dg.SkipReason)  # all landed days ingested

    landing = pipeline_copy / "landing"
    touch(landing / "orders" / f"date={END}" / "part-00000.csv")
    touch(landing / "orders" / f"date={END}" / "part-00000.csv")  # two changes, one day
    touch(landing / "events" / f"date={PREVIOUS}" / "part-00000.csv")
    result = evaluate(pipeline_copy)
    requests = {r.partition_key: r for r in result.run_requests}
    assert set(requests) == {PREVIOUS.isoformat(), END.isoformat()}
    assert all(r.tags[TRIGGER_TAG] == "landing" for r in requests.values())
    keys = {day: r.run_key for day, r in requests.items()}
    assert len(set(keys.values())) == 2 and all(day in key for day, key in keys.items())
    # the next tick sees the same files: the same keys, so nothing is launched twice
    again = {r.partition_key: r.run_key for r in evaluate(pipeline_copy).run_requests}
    assert again == keys

    # the run the daemon would launch for END ingests it: only PREVIOUS is left
    job = definitions.resolve_job_def(requests[END.isoformat()].job_name or "strata_daily")
    run = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=END.isoformat(),
        tags={**requests[END.isoformat()].tags, "dagster/sensor_name": LANDING_SENSOR},
        raise_on_error=False,
    )
    assert run.success
    left = evaluate(pipeline_copy)
    assert [r.partition_key for r in left.run_requests] == [PREVIOUS.isoformat()]
    assert left.run_requests[0].run_key == keys[PREVIOUS.isoformat()]
