"""`NpuGroupedMatmulMoE`: MoE layers with torch_npu's grouped matmul for the experts.

``npu_grouped_matmul(Tensor[] x, Tensor[] weight, *, ..., Tensor? group_list=None, ...,
int? split_item=0, int? group_type=None, int? group_list_type=0, ...) -> Tensor[]``
(schema in ``schemas/torch_npu_ops.json``): with one ``x`` ``[N, H]`` whose rows are sorted by
expert, one stacked ``weight`` ``[E, H, O]``, ``group_type=0`` (groups split the rows),
``group_list_type=1`` (``group_list`` holds each expert's row count) and ``split_item=2``
(one output tensor), it returns ``[N, O]``. Gate/up, then ``npu_swiglu``, then down; the rows
are returned unweighted (the combine applies the routing weights, as the contract says).

The layout's weights are ``w13 [E, 2I, H]`` and ``w2 [E, H, I]`` (out x in); the grouped
matmul takes in x out, so the transposed views are passed (the op accepts transposed weights).
Routing, dispatch and combine are the torch reference's device ops.
"""

from __future__ import annotations

import torch
from anyware.kernels.reference import ReferenceMoEBackend
from anyware.plugin import Dispatched


class NpuGroupedMatmulMoE(ReferenceMoEBackend):
    name = "npu-grouped-matmul"
    priority = 10

    def __init__(self, platform, spec, communicator=None) -> None:
        super().__init__(platform, spec, communicator)
        self._npu = platform.torch_npu()

    def _gmm(self, x, w, counts):
        return self._npu.npu_grouped_matmul([x], [w], group_list=counts, split_item=2,
                                            group_type=0, group_list_type=1)[0]

    def experts(self, dispatched: Dispatched, w13, w2) -> torch.Tensor:
        self.calls["experts"] += 1
        x = dispatched.hidden
        if x.shape[0] == 0:
            return x.new_empty((0, w2.shape[1]))
        counts = dispatched.expert_counts.to(torch.int64)
        gate_up = self._gmm(x, w13.transpose(1, 2), counts)
        h = self._npu.npu_swiglu(gate_up, dim=-1)
        return self._gmm(h, w2.transpose(1, 2), counts).to(x.dtype)
