"""The client-side feed checker: every kind of delivery fault is told apart."""

from wirelab.sequence import SequenceChecker


def feed(checker: SequenceChecker, seqs: list[int]) -> list[str]:
    return [checker.observe(seq, ts_us=1_000, received_us=1_500) for seq in seqs]


def test_in_order_events_are_all_ok_with_their_lag() -> None:
    checker = SequenceChecker()
    assert feed(checker, [1, 2, 3]) == ["ok", "ok", "ok"]
    assert checker.delivered == 3
    assert checker.lags_us == [500, 500, 500]


def test_gap_duplicate_and_late_arrival_are_classified() -> None:
    checker = SequenceChecker()
    verdicts = feed(checker, [1, 2, 5, 5, 3, 6, 2])
    assert verdicts == ["ok", "ok", "gap", "duplicate", "out_of_order", "ok", "duplicate"]
    assert (checker.gaps, checker.missing) == (1, 1)  # 4 never came; 3 came late
    assert checker.duplicates == 2
    assert checker.out_of_order == 1
    assert checker.delivered == 4


def test_live_only_first_event_may_start_anywhere() -> None:
    checker = SequenceChecker()
    assert feed(checker, [1000, 1001]) == ["ok", "ok"]
    assert checker.missing == 0


def test_reset_counts_declared_loss_and_moves_the_cursor() -> None:
    checker = SequenceChecker()
    feed(checker, [1, 2])
    checker.reset(since=2, first=10)
    assert feed(checker, [10]) == ["ok"]
    assert (checker.resets, checker.reset_lost, checker.missing) == (1, 7, 0)
    assert checker.last_seq == 10
