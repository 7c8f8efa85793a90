"""Request types: the lowest core layer above the contract and the kernels.

Everything that describes a request and what happens to it crosses the core's layers as
these dataclasses: the scheduler, the sampler, the executor, the engine and the server all
import them from here, and this package imports only :mod:`anyware.plugin`.
"""

from anyware.request.batch import ScheduledBatch
from anyware.request.delta import TokenDelta, TokenLogprob
from anyware.request.draft_tree import DraftTree, InvalidDraftTreeError
from anyware.request.errors import InvalidRequestError
from anyware.request.params import MAX_TOP_LOGPROBS, SamplingParams
from anyware.request.request import Request, placeholder

__all__ = [
    "MAX_TOP_LOGPROBS", "DraftTree", "InvalidDraftTreeError", "InvalidRequestError", "Request", "SamplingParams", "ScheduledBatch",
    "TokenDelta", "TokenLogprob", "placeholder",
]
