"""The plugin contract's version.

``PLUGIN_API_VERSION`` follows semantic versioning:

* a plugin targets ``MAJOR.MINOR`` (``Platform.plugin_api_version``): it loads when its MAJOR
  equals ours and its MINOR is not newer than ours (a plugin written against 1.3 may use things
  added in 1.3, so a 1.2 engine refuses it); the core checks this at discovery
  (``anyware.runtime.compat.check_api_version``) and reports a mismatch as the plugin being
  unavailable, with the reason;
* any removal or change of meaning in :mod:`anyware.plugin` bumps MAJOR; additions bump MINOR.

The public surface of :mod:`anyware.plugin` is snapshot-tested (``tests/unit/test_api_surface``)
so that every change to it is deliberate and comes with a version bump (rule 4).

History (docs/plugins.md, "Versioning"): 2.1 added ``KVLayout.head_major`` (the HND KV order),
``KVLayout.slot_index``, ``ExecutionStrategy.run_and_sample``, ``StepSample``,
``AttentionFeatures.padded_verify`` and ``StepProgram.verify_tokens``; 2.2 added
``Capabilities.quantization``, ``PlatformConfig.quantization``, ``KernelOps.fp8_linear`` and
``QUANTIZATIONS`` (W8A8 FP8 linear layers), and ``KernelOps.norm_rotary`` (q/k norm + rotary,
with a default that composes the existing ops), and fp8 MoE experts: ``MoESpec.quantization``,
``MoEBackend.quantizations`` and the keyword-optional ``scales`` of ``MoEBackend.experts`` /
``MoEBackend.forward`` (a backend that does not declare ``"fp8"`` is unaffected); 2.3 added
``MoEBackend.expert_parallel`` (a backend declares that it runs ``ep_size > 1`` instead of
overriding ``unsupported``; default False, so a 2.2 backend is unaffected); 2.4 added
``Fp8Rows`` and ``KernelOps.fp8_activations`` / ``quantize_fp8`` / ``rms_norm_fp8`` /
``fused_add_rms_norm_fp8`` / ``silu_and_mul_fp8`` (an fp8 projection's input quantised in the
op that produces it; default off, so a 2.3 ops class is unaffected); 2.5 added
``StepProgram.max_requests`` (the running-request cap, which the core now sizes from the KV
pool: graph and compile buckets stop there).
"""

from __future__ import annotations

PLUGIN_API_VERSION = "2.5.0"
