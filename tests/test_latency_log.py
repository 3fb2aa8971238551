from sinks.latency import LatencyLog


def test_percentiles_of_one_period_then_a_new_one() -> None:
    log = LatencyLog()
    assert log.summary() is None
    log.add(10_000_000, [10_000_000 - 1000 * k for k in range(1, 101)])  # 1..100 ms
    s = log.summary()
    assert s is not None and s.n == 100
    assert abs(s.p50_s - 0.0505) < 1e-9 and abs(s.max_s - 0.1) < 1e-9
    assert abs(s.p99_s - 0.09901) < 1e-9
    assert "p99=0.099s" in str(s)
    log.reset()
    assert len(log) == 0 and log.summary() is None
