"""Which memory sample stands for the held connections (correctness on recorded samples)."""

from __future__ import annotations

from wirelab_bench.connections import held_sample


def samples(pairs: list[tuple[int, int]]) -> list[dict[str, int]]:
    """(connections, generator RSS KiB) pairs as the sampler records them, every 0.5 s."""
    return [
        {"connections": connections, "server_rss_kb": 40_000 + connections, "generator_rss_kb": rss}
        for connections, rss in pairs
    ]


def test_a_sample_taken_while_the_generator_tears_its_users_down_does_not_count():
    # Recorded (SSE, 1,000 idle connections): spawning, holding, then the last sample while
    # the generator stopped its users, the server still counting every socket.
    recorded = samples(
        [(242, 71208), (1000, 79072), (1000, 79084), (1000, 79084), (1000, 79088),
         (1000, 79088), (1000, 79088), (1000, 79088), (1000, 86772)]
    )  # fmt: skip
    held = held_sample(recorded)
    assert held == {"connections": 1000, "server_rss_kb": 41_000, "generator_rss_kb": 79088}


def test_samples_before_every_connection_was_up_do_not_count():
    recorded = samples([(0, 49052), (841, 77476), (1000, 79116), (1000, 79124), (0, 79040)])
    held = held_sample(recorded)
    assert held["connections"] == 1000
    assert held["generator_rss_kb"] == 79120  # the median of the two held samples


def test_no_samples_reads_as_no_connections():
    assert held_sample([])["connections"] == -1
