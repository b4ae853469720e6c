"""Helpers of the fault suite (tests/faults): load, outcomes, the independent checker."""
