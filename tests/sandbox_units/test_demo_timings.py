"""What `./dev demo` prints about how fast the bad version was caught."""

from __future__ import annotations

from modelrollout_devkit.sandbox.demo import timing_lines


def test_a_request_after_the_breach_is_timed_from_it() -> None:
    assert timing_lines({"breach_to_decision_s": 0.4, "breach_to_zero_traffic_s": 0.68}) == [
        "first breaching sample -> rollback decision:          0.40s",
        "first breaching sample -> last request 3.0.0 served:  0.68s",
    ]


def test_no_request_after_the_breach_is_said_so_not_shown_as_a_negative_time() -> None:
    # Seen in a run: the last request 3.0.0 served came 0.07 s before the breaching sample.
    lines = timing_lines({"breach_to_decision_s": 0.4, "breach_to_zero_traffic_s": -0.07})
    assert lines[1] == "last request 3.0.0 served: 0.07s before the first breaching sample (none after)"
    assert not any("-0.07" in line for line in lines)


def test_what_was_not_measured_is_left_out() -> None:
    assert timing_lines({"breach_to_decision_s": None, "breach_to_zero_traffic_s": None}) == []
