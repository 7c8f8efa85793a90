"""Continuous batching: admission, chunked prefill, retraction, stop conditions."""

from anyware.scheduler.policy import FCFSPolicy, LPMPolicy, SchedulePolicy, make_policy
from anyware.scheduler.scheduler import ScheduledBatch, Scheduler, SchedulerConfig

__all__ = [
    "FCFSPolicy", "LPMPolicy", "ScheduledBatch", "SchedulePolicy", "Scheduler",
    "SchedulerConfig", "make_policy",
]
