"""Slots: the study-wide ``--trials`` target holds however the workers' claims interleave (coordination)."""

import threading

import optuna

from mobilenet_search.search.coordination import Slots


def _returns_within(thread: threading.Thread, seconds: float) -> bool:
    thread.join(seconds)
    return not thread.is_alive()


def test_a_higher_trial_waits_for_a_lower_one_still_deciding_and_the_target_holds():
    """The race seen on PostgreSQL: trial 1 claims before trial 0 has, so it must not count the slots yet."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    lower, higher = study.ask(), study.ask()
    slots = Slots(target=1, poll_seconds=0.01)
    answer = {}
    worker = threading.Thread(target=lambda: answer.setdefault("higher", slots.take(higher)))
    worker.start()
    assert not _returns_within(worker, 0.3), "trial 1 decided while trial 0, below it, had not yet claimed"
    assert slots.take(lower) is True  # the lowest claimant gets the one slot
    assert not _returns_within(worker, 0.3)  # trial 0 holds the slot; trial 1 waits in case it dies
    lower.set_user_attr("outcome", "trained")
    study.tell(lower, 0.5)
    assert _returns_within(worker, 5.0)
    assert answer["higher"] is False


def test_lower_trials_that_never_claim_do_not_hold_anyone_up():
    """A reference net trains outside the target and never claims; a higher candidate takes the free slot."""
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={"reference": True, "reference_name": "mobilenetv2_1.0_224"})
    reference, candidate = study.ask(), study.ask()
    assert reference.user_attrs.get("reference") is True
    assert Slots(target=1, poll_seconds=0.01).take(candidate) is True
