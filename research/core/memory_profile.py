"""The peak of memory held by TensorFlow tensors alive at once while a function runs.

TensorFlow's allocator statistics (`tf.config.experimental.get_memory_info`) count whole allocator
chunks, and which free chunk a request lands in depends on what ran before, so the same step can
report peaks tens of megabytes apart. The profiler's allocation events carry each tensor's requested
size, which gives the memory a computation itself needs, independent of that history.
"""
from research.core import profiler_trace

_ALLOCATION, _DEALLOCATION = "MemoryAllocation", "MemoryDeallocation"


def peak_live_tensor_bytes(fn) -> int:
    """Runs `fn()` under the profiler; returns the largest sum of requested bytes alive at once.

    Only allocations made while `fn` runs count: tensors that already exist are left out.
    """
    space = profiler_trace.trace(fn, host_tracer_level=3)
    events = []
    for plane in space.planes:
        stat_names = {key: meta.name for key, meta in plane.stat_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                kind = plane.event_metadata[event.metadata_id].name
                if kind in (_ALLOCATION, _DEALLOCATION):
                    stats = {stat_names[s.metadata_id]: s.uint64_value or s.int64_value for s in event.stats}
                    events.append((line.timestamp_ns * 1000 + event.offset_ps, kind == _ALLOCATION, stats["addr"],
                                   stats.get("requested_bytes", 0)))
    if not events:
        raise RuntimeError(
            "the profiler recorded no allocation events: TensorFlow reports them from BFC allocators only, "
            "which the CPU uses with oneDNN on (TF_ENABLE_ONEDNN_OPTS=1, the default once `research` is "
            "imported before TensorFlow) or with TF_CPU_ALLOCATOR_USE_BFC=1; set one of them before "
            "TensorFlow is first imported")
    live, current, peak = {}, 0, 0
    for _, allocation, address, size in sorted(events):
        if allocation:
            live[address] = size
            current += size
            peak = max(peak, current)
        else:
            current -= live.pop(address, 0)
    return peak
