"""The shared argument checks (hdml_ext._checks): what they accept and the messages they give."""

import numpy as np
import pytest
import torch

from hdml_ext._checks import (
    as_int_vector,
    require_fraction,
    require_int,
    require_int_in_range,
    require_nodes,
    require_query_gallery,
    require_tensor,
)


def test_require_int_accepts_numpy_integers_and_returns_an_int():
    value = require_int("k", np.int64(3), minimum=1)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize("value", [True, 2.0, "3", None])
def test_require_int_names_the_argument_and_the_type(value):
    with pytest.raises(TypeError, match=f"k should be an int, got {type(value).__name__}"):
        require_int("k", value)


def test_require_int_checks_the_minimum():
    with pytest.raises(ValueError, match="k should be >= 1, got 0"):
        require_int("k", 0, minimum=1)


def test_require_int_in_range_includes_both_ends():
    assert require_int_in_range("views", 2, 2, 5) == 2
    assert require_int_in_range("views", 5, 2, 5) == 5
    with pytest.raises(ValueError, match=r"views should be in 2\.\.5, got 6"):
        require_int_in_range("views", 6, 2, 5)


@pytest.mark.parametrize("value", [0, 1, 1.5, True, "0.5"])
def test_require_fraction_rejects_all_but_open_unit_interval(value):
    with pytest.raises(ValueError, match="f should be a number strictly between 0 and 1"):
        require_fraction("f", value)


def test_require_tensor_message():
    with pytest.raises(TypeError, match=r"x should be a torch\.Tensor, got list"):
        require_tensor("x", [1.0])


def test_require_nodes_checks_ids_and_device():
    nodes = torch.tensor([[0, 1, 2]])
    assert require_nodes(nodes, 3, 2, torch.device("cpu")) is nodes
    with pytest.raises(ValueError, match=r"nodes should index the 2 images, i.e. lie in \[0, 2\)"):
        require_nodes(nodes, 2, 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="nodes should be on meta like the images, got cpu"):
        require_nodes(nodes, 3, 2, torch.device("meta"))


def test_require_query_gallery_needs_one_width_and_rows():
    with pytest.raises(ValueError, match="query should have D = 4 columns like gallery, got 3"):
        require_query_gallery(torch.zeros(2, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="query and gallery should be non-empty, got 0 and 5 rows"):
        require_query_gallery(torch.zeros(0, 4), torch.zeros(5, 4))


def test_as_int_vector_takes_tensors_and_rejects_floats():
    assert as_int_vector("ids", torch.tensor([1, 2])).dtype == np.int64
    with pytest.raises(TypeError, match="ids should hold integers, got dtype float64"):
        as_int_vector("ids", np.array([1.5]))
