"""A Python client built from proto/ at test time, against a running jobqueue.

Usage: client_check.py SERVER_ADDR TARGET_BASE_URL
Exits non-zero with a message on the first thing that is not as documented.
"""

import os
import sys
import tempfile
import time

import grpc
import grpc_tools
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_stubs(out):
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main([
        "protoc",
        f"-I{os.path.join(ROOT, 'proto')}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
    ] + sorted(
        f"jobqueue/v1/{name}"
        for name in os.listdir(os.path.join(ROOT, "proto", "jobqueue", "v1"))
        if name.endswith(".proto")
    ))
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)


def main():
    addr, target = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as out:
        build_stubs(out)
        from jobqueue.v1 import jobs_pb2 as pb
        from jobqueue.v1 import jobs_pb2_grpc as rpc
        from google.protobuf import json_format

        channel = grpc.insecure_channel(addr)
        jobs = rpc.JobServiceStub(channel)

        specs = []
        for i in range(3):
            spec = pb.JobSpec(tags=["python"], max_attempts=2)
            spec.request.method = "PUT"
            spec.request.url = f"{target}/py/{i}"
            spec.request.params["i"] = str(i)
            spec.request.json.struct_value.update({"index": i, "lang": "python"})
            specs.append(spec)
        answers = jobs.SubmitJobs(pb.SubmitJobsRequest(jobs=specs), timeout=10).results
        assert len(answers) == 3, answers
        ids = [a.id for a in answers]
        assert all(i.startswith("j_") and len(i) == 28 for i in ids), ids

        deadline = time.time() + 20
        for job_id in ids:
            while True:
                job = jobs.GetJob(pb.GetJobRequest(id=job_id), timeout=10)
                if job.status == pb.JOB_STATUS_SUCCEEDED:
                    break
                assert time.time() < deadline, f"{job_id} stuck in {pb.JobStatus.Name(job.status)}"
                time.sleep(0.05)
            assert job.request.method == "PUT", job.request
            assert list(job.tags) == ["python"], job.tags

        result = jobs.GetJobResult(pb.GetJobResultRequest(id=ids[1]), timeout=10)
        response = result.final_attempt.response
        assert response.status_code == 200, response
        body = json_format.MessageToDict(response.json)
        assert body["path"] == "/py/1", body

        listed = jobs.ListJobs(pb.ListJobsRequest(tags=["python"]), timeout=10)
        assert listed.total_size == 3, listed.total_size

        bad = pb.JobSpec()
        bad.request.url = "gopher://old.example/"
        try:
            jobs.SubmitJob(pb.SubmitJobRequest(job=bad), timeout=10)
            sys.exit("a gopher:// URL was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
            assert e.details().startswith("job.request.url:"), e.details()

        try:
            jobs.GetJob(pb.GetJobRequest(id="j_01ARZ3NDEKTSV4RRFFQ69G5FAV"), timeout=10)
            sys.exit("an unknown job was found")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()

        check_schedules(channel, pb, target)
    print("python client: ok")


def check_schedules(channel, pb, target):
    """A schedule at 03:00 in Tokyo: its next runs, a run triggered now, its runs."""
    from jobqueue.v1 import schedules_pb2 as spb
    from jobqueue.v1 import schedules_pb2_grpc as srpc

    schedules = srpc.ScheduleServiceStub(channel)
    from jobqueue.v1 import jobs_pb2_grpc as rpc

    jobs = rpc.JobServiceStub(channel)
    nightly = spb.Schedule(cron="0 3 * * *", time_zone="Asia/Tokyo")
    nightly.job.request.method = "PUT"
    nightly.job.request.url = f"{target}/py/nightly"
    created = schedules.CreateSchedule(
        spb.CreateScheduleRequest(schedule_id="py-nightly", schedule=nightly), timeout=10
    )
    assert created.state == spb.SCHEDULE_STATE_ACTIVE, created
    # 03:00 in Tokyo (UTC+9, no daylight saving) is 18:00 UTC the day before.
    hours = [t.ToDatetime().hour for t in created.next_run_times]
    assert hours == [18] * 5, hours

    run = schedules.TriggerSchedule(spb.TriggerScheduleRequest(id="py-nightly"), timeout=10)
    assert run.trigger == spb.RUN_TRIGGER_MANUAL, run
    deadline = time.time() + 20
    while jobs.GetJob(pb.GetJobRequest(id=run.job_id), timeout=10).status != pb.JOB_STATUS_SUCCEEDED:
        assert time.time() < deadline, f"{run.job_id} never succeeded"
        time.sleep(0.05)
    runs = schedules.ListScheduleRuns(
        spb.ListScheduleRunsRequest(schedule_id="py-nightly"), timeout=10
    ).runs
    assert [r.job_id for r in runs] == [run.job_id], runs
    assert runs[0].status == pb.JOB_STATUS_SUCCEEDED and runs[0].status_code == 200, runs

    try:
        schedules.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="py-nightly", schedule=nightly), timeout=10
        )
        sys.exit("a taken schedule id was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e.code()


if __name__ == "__main__":
    main()
