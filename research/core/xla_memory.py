"""What XLA allocates for a compiled function: its buffer assignment, read from the compiled program.

`tf.function(jit_compile=True).experimental_get_compiler_ir(*args)(stage='optimized_hlo_proto_serialized')`
is the optimized HLO module with XLA's buffer assignment: every allocation the compiled program makes,
each flagged as an entry parameter (the caller's inputs), live-out (the results) or neither (the
temporaries: everything the program needs while it runs). No run is needed, so this works for any
program XLA compiles, including one meant for a TPU, and it does not depend on what else the process
holds.
"""
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class XlaMemory:
    """Bytes of one compiled program's allocations.

    parameters: the inputs it reads (buffers the caller owns).
    outputs: its results (allocations live out of the program; an output that aliases a temporary is
      counted here).
    temporaries: everything else it allocates, in one preallocated block (thread-local scalars and
      constants left out).
    """
    parameters: int
    outputs: int
    temporaries: int

    @property
    def allocated(self) -> int:
        """What the program allocates beyond its inputs: outputs + temporaries."""
        return self.outputs + self.temporaries


def compiled_memory(function, *args, **kwargs) -> XlaMemory:
    """The buffer assignment of `function` (a `tf.function`, normally with jit_compile=True: the program
    it runs) compiled by XLA for `args`.

    Raises:
      ValueError: when `function` is not a tf.function.
    """
    from tensorflow.compiler.xla.service import hlo_pb2  # pylint: disable=import-outside-toplevel

    if not isinstance(function, tf.types.experimental.PolymorphicFunction):
        raise ValueError(f"compiled_memory needs a tf.function(jit_compile=True), got {function!r}")
    serialized = function.experimental_get_compiler_ir(*args, **kwargs)(stage="optimized_hlo_proto_serialized")
    proto = hlo_pb2.HloProto()
    proto.ParseFromString(serialized)
    parameters = outputs = temporaries = 0
    for allocation in proto.buffer_assignment.buffer_allocations:
        if allocation.is_thread_local or allocation.is_constant:
            continue
        if allocation.is_entry_computation_parameter:
            parameters += allocation.size
        elif allocation.maybe_live_out:
            outputs += allocation.size
        else:
            temporaries += allocation.size
    return XlaMemory(parameters=parameters, outputs=outputs, temporaries=temporaries)
