"""Continuous batching: admission, chunked prefill, retraction, stop conditions."""

from anyware.scheduler.policy import FCFSPolicy, LPMPolicy, SchedulePolicy, make_policy
from anyware.scheduler.scheduler import Scheduler, SchedulerConfig

__all__ = [
    "FCFSPolicy", "LPMPolicy", "SchedulePolicy", "Scheduler",
    "SchedulerConfig", "make_policy",
]
