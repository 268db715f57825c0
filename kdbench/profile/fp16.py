"""Float16 conversion of a float32 ONNX graph with onnx's own API.

``onnxconverter-common`` is not a kdbench dependency, so the conversion is done here in four
steps on the graph that was already checked in float32:

1. Every float32 initializer and ``Constant``/``ConstantOfShape`` value becomes float16, and
   every ``Cast`` to float32 becomes a ``Cast`` to float16, so all float arithmetic runs in
   float16.
2. A ``Cast`` to float16 follows each float32 graph input and a ``Cast`` to float32 precedes
   each float32 graph output, so callers keep feeding and reading float32 arrays.
3. Inputs that the ONNX standard defines as float32 only (``Resize`` and ``Upsample`` scales)
   stay float32: a constant feeding only such inputs is left unconverted, and a computed one
   gets a ``Cast`` back to float32.
4. Stale ``value_info`` types are dropped and ``onnx.checker.check_model(full_check=True)`` runs
   strict type inference, so a graph with mismatched types is rejected here, not at run time.

Graphs with subgraphs (``If``, ``Loop``, ``Scan``) are rejected with
:class:`Float16ConversionError`.
Whether onnxruntime has float16 kernels for every operator is a separate question: the caller
loads the result in an ``InferenceSession`` and records the error when one is missing.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

logger = logging.getLogger(__name__)

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504

# (operator, input index) pairs whose type the ONNX standard fixes to tensor(float).
FLOAT32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}


class Float16ConversionError(ValueError):
    """The graph contains a construct that this converter does not handle."""


def convert_to_float16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Return a float16 copy of ``model`` with float32 inputs and outputs, and conversion counts.

    The counts are ``initializers`` and ``constants`` converted and ``clipped_values``: weights
    whose magnitude exceeds the float16 maximum (65504) and were clipped to it instead of
    becoming infinity. Raises :class:`Float16ConversionError` for graphs with subgraphs and
    ``onnx.checker.ValidationError`` when the converted graph fails strict type checking.
    """
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    graph = converted.graph
    _reject_subgraphs(graph)

    keep_float32 = _constants_used_only_as_float32(graph)
    counts = {"initializers": 0, "constants": 0, "clipped_values": 0}

    for initializer in graph.initializer:
        if initializer.data_type == TensorProto.FLOAT and initializer.name not in keep_float32:
            initializer.CopyFrom(_to_float16(initializer, counts))
            counts["initializers"] += 1

    for node in graph.node:
        if node.op_type in ("Constant", "ConstantOfShape") and node.output[0] not in keep_float32:
            counts["constants"] += _convert_constant(node, counts)
        elif node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == TensorProto.FLOAT:
                to.i = TensorProto.FLOAT16

    _cast_float32_only_inputs(graph, keep_float32)
    _cast_graph_inputs_and_outputs(graph)
    del graph.value_info[:]

    onnx.checker.check_model(converted, full_check=True)
    return converted, counts


def _reject_subgraphs(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise Float16ConversionError(
                    f"node '{node.name}' ({node.op_type}) has a subgraph; float16 conversion of "
                    "If/Loop/Scan bodies is not supported"
                )


def _constants_used_only_as_float32(graph: onnx.GraphProto) -> set[str]:
    """Return initializer and Constant names consumed only at float32-only inputs."""
    uses: dict[str, list[bool]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name:
                uses[name].append((node.op_type, index) in FLOAT32_ONLY_INPUTS)
    constants = {i.name for i in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type in ("Constant", "ConstantOfShape")}
    return {name for name in constants if uses.get(name) and all(uses[name])}


def _to_float16(tensor: TensorProto, counts: dict[str, int]) -> TensorProto:
    values = numpy_helper.to_array(tensor)
    too_large = np.isfinite(values) & (np.abs(values) > FLOAT16_MAX)
    if too_large.any():
        counts["clipped_values"] += int(too_large.sum())
        logger.warning(
            "float16 conversion: %d values of '%s' exceed %g and are clipped",
            int(too_large.sum()),
            tensor.name,
            FLOAT16_MAX,
        )
        values = np.where(too_large, np.sign(values) * FLOAT16_MAX, values)
    return numpy_helper.from_array(values.astype(np.float16), tensor.name)


def _convert_constant(node: onnx.NodeProto, counts: dict[str, int]) -> int:
    """Convert the float32 value of a Constant or ConstantOfShape node; return 1 if converted."""
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT:
            attribute.t.CopyFrom(_to_float16(attribute.t, counts))
            return 1
        if attribute.name in ("value_float", "value_floats"):
            values = [attribute.f] if attribute.name == "value_float" else list(attribute.floats)
            array = np.array(values, dtype=np.float32)
            if attribute.name == "value_float":
                array = array.reshape(())
            tensor = numpy_helper.from_array(array, node.output[0])
            node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute("value", _to_float16(tensor, counts)))
            return 1
    return 0


def _cast_float32_only_inputs(graph: onnx.GraphProto, keep_float32: set[str]) -> None:
    """Insert a Cast to float32 before float32-only inputs that are computed in float16."""
    new_nodes = []
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name and (node.op_type, index) in FLOAT32_ONLY_INPUTS and name not in keep_float32:
                cast_name = f"{name}__float32_for_{node.name or node.op_type}_{index}"
                new_nodes.append(
                    helper.make_node(
                        "Cast", [name], [cast_name], to=TensorProto.FLOAT, name=f"{cast_name}_cast"
                    )
                )
                node.input[index] = cast_name
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)


def _cast_graph_inputs_and_outputs(graph: onnx.GraphProto) -> None:
    """Keep float32 graph inputs and outputs, with Casts to and from float16 inside the graph."""
    initializer_types = {i.name: i.data_type for i in graph.initializer}
    input_casts = []
    for graph_input in graph.input:
        if graph_input.name in initializer_types:
            # An initializer listed as a graph input (keep_initializers_as_inputs) keeps its own,
            # possibly converted, type.
            graph_input.type.tensor_type.elem_type = initializer_types[graph_input.name]
            continue
        if graph_input.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{graph_input.name}__float16"
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == graph_input.name:
                    node.input[index] = inner
        input_casts.append(
            helper.make_node(
                "Cast", [graph_input.name], [inner], to=TensorProto.FLOAT16, name=f"{inner}_cast"
            )
        )

    output_casts = []
    for graph_output in graph.output:
        if graph_output.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{graph_output.name}__float16"
        for node in graph.node:
            for index, name in enumerate(node.output):
                if name == graph_output.name:
                    node.output[index] = inner
            for index, name in enumerate(node.input):
                if name == graph_output.name:
                    node.input[index] = inner
        output_casts.append(
            helper.make_node(
                "Cast", [inner], [graph_output.name], to=TensorProto.FLOAT, name=f"{inner}_cast"
            )
        )

    nodes = input_casts + list(graph.node) + output_casts
    del graph.node[:]
    graph.node.extend(nodes)
