"""Conv2d and MaxPool2d: every map against torch and finite differences, ties, and bad arguments."""

import numpy as np
import pytest
import torch
from oracle import check_layer, check_network

import refplastic.nn.conv as conv_module
from refplastic.nn import Flatten, Linear, MSELoss, Network, ReLU
from refplastic.nn.conv import (SMALL_PRODUCT, Conv2d, Im2col, SpaceToDepth, blocked_product, column_block,
                                weight_product)
from refplastic.nn.pool import MaxPool2d

DTYPES = [np.float64, np.float32]

CONV_CASES = [  # (in, out, kernel_size, stride, padding, bias), input shape
    ((3, 4, 3, 1, 0, True), (2, 3, 7, 6)),
    ((3, 4, 3, 2, 1, True), (2, 3, 7, 6)),
    ((2, 5, 2, 3, 2, False), (3, 2, 8, 9)),
    ((3, 2, (3, 2), (2, 1), (1, 2), True), (2, 3, 7, 6)),
    ((4, 3, 1, 1, 0, True), (2, 4, 5, 5)),
    ((2, 3, (1, 3), 1, (0, 1), False), (1, 2, 4, 6)),
    ((2, 3, 4, 1, 0, True), (2, 2, 4, 4)),  # the kernel covers the whole input
    ((3, 2, 5, 2, 2, True), (1, 3, 3, 3)),  # the kernel is larger than the input, not the padded input
    ((32, 8, 4, 2, 0, True), (2, 32, 8, 8)),  # sums of length 512, as in the DQN network
    # kernels that are multiples of the stride take the space-to-depth lowering
    ((3, 4, 4, 2, 0, True), (2, 3, 9, 8)),  # the last input row is in no window
    ((2, 3, 8, 4, 0, False), (2, 2, 13, 12)),
    ((3, 2, (4, 2), (2, 1), 0, True), (2, 3, 7, 6)),  # stride 1 across
    ((2, 3, 6, 3, 1, True), (2, 2, 9, 10)),  # padded
    ((2, 2, (2, 3), (2, 3), (1, 0), True), (1, 2, 5, 7)),  # kernel = stride: windows do not overlap
]


@pytest.fixture(params=["whole", "blocks"])
def products(request, monkeypatch):
    """"blocks": products so small that OpenBLAS's small-matrix kernels would take a few hundred
    multiply-adds, so that these small cases go through the blocked paths (column blocks; lowering
    and multiplying block of output pixels by block) that only large batches take otherwise."""
    if request.param == "blocks":
        monkeypatch.setattr(conv_module, "SMALL_PRODUCT", 300)
        monkeypatch.setattr(conv_module, "MIN_BLOCK", 1)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("args,x_shape", CONV_CASES, ids=lambda c: repr(c))
def test_conv2d(args, x_shape, input_grad, dtype, products):
    *positional, bias = args
    check_layer(Conv2d(*positional, bias=bias), x_shape, np.random.default_rng(0), dtype, input_grad=input_grad)



@pytest.mark.parametrize("kernel,stride,padding,lowering", [
    (8, 4, 0, SpaceToDepth), (4, 2, 1, SpaceToDepth), ((4, 2), (2, 1), 0, SpaceToDepth), (2, 2, 0, SpaceToDepth),
    (3, 1, 1, Im2col), (4, 1, 0, Im2col), (3, 2, 1, Im2col), ((4, 3), 2, 0, Im2col),
])
def test_conv2d_lowering_choice(kernel, stride, padding, lowering):
    assert type(Conv2d(2, 3, kernel, stride, padding).lowering) is lowering



@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)], ids=["im2col", "space-to-depth padded", "space-to-depth"])
def test_conv2d_maps_do_not_depend_on_the_memory_layout_of_their_arrays(stride, padding, products):
    """Layers pass each other views with other strides (a convolution's output is an NCHW view of
    batch-last memory): every map gives the same numbers for C-ordered, batch-last and strided
    inputs and cotangents, and its outputs and gradients have the true shapes."""
    rng = np.random.default_rng(5)
    layer = Network([Conv2d(3, 4, 4, stride, padding)], rng).layers[0]
    x = rng.normal(size=(5, 3, 9, 8))
    y_shape = (5, 4, *layer.output_hw(x.shape))
    gy, rx, rgy = rng.normal(size=y_shape), rng.normal(size=(2, *x.shape)), rng.normal(size=(2, *y_shape))
    v = {k: rng.normal(size=(2, *s)) for k, s in layer.param_shapes.items()}

    def layouts(a):  # C order; batch-last (the images' axis last); every other element of a larger array
        order = (*range(a.ndim - 4), a.ndim - 3, a.ndim - 2, a.ndim - 1, a.ndim - 4)
        batch_last = np.ascontiguousarray(a.transpose(order)).transpose(np.argsort(order))
        strided = np.zeros((*a.shape[:-1], 2 * a.shape[-1]))[..., ::2]
        strided[...] = a
        return [a, batch_last, strided]

    results = []
    for xs, gys, rxs, rgys in zip(*map(layouts, (x, gy, rx, rgy))):
        y, cache = layer.forward(xs)
        grads = {k: np.empty(s) for k, s in layer.param_shapes.items()}
        gx = layer.backward(cache, gys, grads)
        ry, rcache = layer.forward_r(cache, rxs, v)
        rgrads = {k: np.empty((2, *s)) for k, s in layer.param_shapes.items()}
        rgx = layer.backward_r(cache, rcache, gys, rgys, rgrads)
        assert (y.shape, gx.shape, ry.shape, rgx.shape) == (y_shape, x.shape, rgy.shape, rx.shape)
        results.append([y, gx, ry, rgx, *grads.values(), *rgrads.values()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("args,x_shape", [((3, 4, 3, 2, 1, True), (3, 3, 7, 6)), ((3, 4, 4, 2, 0, True), (3, 3, 9, 8)),
                                          ((2, 3, 6, 3, 1, False), (2, 2, 9, 10))], ids=repr)
def test_conv2d_example_gradients_are_the_backward_of_each_example(args, x_shape, products):
    *positional, bias = args
    layer = Conv2d(*positional, bias=bias)
    rng = np.random.default_rng(5)
    layer.params = {k: rng.normal(size=s) for k, s in layer.param_shapes.items()}
    x = rng.normal(size=x_shape)
    y, cache = layer.forward(x)
    gy = rng.normal(size=y.shape)
    out = {k: np.empty((x_shape[0], *s)) for k, s in layer.param_shapes.items()}
    layer.example_gradients(cache, gy, out)
    for n in range(x_shape[0]):
        grads = {k: np.empty(s) for k, s in layer.param_shapes.items()}
        layer.backward(layer.forward(x[n:n + 1])[1], gy[n:n + 1], grads, need_input_grad=False)
        for k in grads:
            np.testing.assert_allclose(out[k][n], grads[k], rtol=1e-12, atol=1e-12)


POOL_CASES = [  # (kernel_size, stride, padding), input shape
    ((2, None, 0), (2, 3, 6, 7)),
    ((3, None, 1), (2, 2, 7, 7)),
    ((3, 1, 1), (1, 3, 5, 6)),
    ((3, 2, 0), (2, 2, 7, 8)),
    ((2, 1, 0), (2, 2, 5, 5)),
    ((2, 2, 1), (1, 2, 5, 4)),
    (((3, 2), (2, 1), (1, 1)), (2, 2, 6, 5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("args,x_shape", POOL_CASES, ids=lambda c: repr(c))
def test_maxpool2d(args, x_shape, dtype):
    check_layer(MaxPool2d(*args), x_shape, np.random.default_rng(0), dtype)


def test_maxpool2d_without_input_gradient_returns_none():
    layer = MaxPool2d(2)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
    y, cache = layer.forward(x)
    assert layer.backward(cache, np.ones_like(y), {}, need_input_grad=False) is None
    assert layer.forward_r(cache, None, {}) == (None, None)
    assert layer.backward_r(cache, None, y, np.ones((1, *y.shape)), {}, need_input_grad=False) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("args", [(2, None, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (1, 2), (1, 1))], ids=repr)
def test_maxpool2d_ties_go_where_torch_sends_them(args, dtype):
    """Small integers tie in almost every window; -inf and NaN must follow torch too."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 3, 7, 6)).astype(dtype)
    x[0, 0, :3, :3] = -np.inf
    x[1, 1, 2:5, 1] = np.nan
    layer = MaxPool2d(*args)
    y, cache = layer.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    yt, indices = torch.nn.functional.max_pool2d(xt, *args, return_indices=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(cache[1], indices.reshape(-1, *indices.shape[2:]).numpy())

    gy = rng.normal(size=y.shape).astype(dtype)
    (gxt,) = torch.autograd.grad(yt, xt, torch.tensor(gy))
    np.testing.assert_array_equal(layer.backward(cache, gy, {}), gxt.numpy())
    rx = rng.normal(size=(2, *x.shape)).astype(dtype)
    ry, _ = layer.forward_r(cache, rx, {})
    at_indices = indices.flatten(2).expand(2, -1, -1, -1)
    np.testing.assert_array_equal(ry, torch.gather(torch.tensor(rx).flatten(3), 3, at_indices).reshape(ry.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("args", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))], ids=repr)
def test_maxpool2d_pools_a_batch_last_input_in_its_layout(args, dtype):
    """A convolution's output lies (C, H, W, N) in memory: pooled in place, its maps give exactly
    what they give on a contiguous copy, and the output and input gradient lie batch-last too."""
    rng = np.random.default_rng(4)
    N, C, H, W = 3, 2, 7, 6
    x = rng.integers(0, 3, size=(C, H, W, N)).astype(dtype).transpose(3, 0, 1, 2)  # ties in most windows
    x[0, 0, :3, :3] = -np.inf
    layer = MaxPool2d(*args)
    y, cache = layer.forward(x)
    y0, cache0 = layer.forward(np.ascontiguousarray(x))
    np.testing.assert_array_equal(y, y0)
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous and not y.flags.c_contiguous
    gy = rng.normal(size=y.shape).astype(dtype)
    gx = layer.backward(cache, gy, {})
    np.testing.assert_array_equal(gx, layer.backward(cache0, gy, {}))
    assert gx.transpose(1, 2, 3, 0).flags.c_contiguous
    rx, rgy = rng.normal(size=(2, *x.shape)).astype(dtype), rng.normal(size=(2, *y.shape)).astype(dtype)
    np.testing.assert_array_equal(layer.forward_r(cache, rx, {})[0], layer.forward_r(cache0, rx, {})[0])
    np.testing.assert_array_equal(layer.backward_r(cache, None, gy, rgy, {}), layer.backward_r(cache0, None, gy, rgy, {}))


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_cnn_gradient_and_hvp_against_torch(dtype):
    """Conv, ReLU, MaxPool, Conv, Flatten, Linear: tangents flow through every conv and pool map."""
    rng = np.random.default_rng(7)
    net = Network([Conv2d(2, 4, 3, 2, 1), ReLU(), MaxPool2d(2, 1), Conv2d(4, 3, 2), ReLU(), Flatten(),
                   Linear(27, 2)], rng, dtype)
    x = rng.normal(size=(3, 2, 9, 9)).astype(dtype)
    t = rng.normal(size=(3, 2)).astype(dtype)
    check_network(net, x, t, MSELoss(), rng)


def test_config_rebuilds_the_torch_module_and_the_layer():
    conv = Conv2d(3, 8, (3, 2), stride=(2, 1), padding=1, bias=False)
    assert conv.config() == {"in_channels": 3, "out_channels": 8, "kernel_size": [3, 2], "stride": [2, 1],
                             "padding": [1, 1], "bias": False}
    tconv = torch.nn.Conv2d(**conv.config())
    assert (tconv.kernel_size, tconv.stride, tconv.padding, tconv.bias) == ((3, 2), (2, 1), (1, 1), None)
    assert Conv2d(**conv.config()).config() == conv.config()
    pool = MaxPool2d(3, padding=1)
    assert pool.config() == {"kernel_size": [3, 3], "stride": [3, 3], "padding": [1, 1]}
    assert MaxPool2d(**pool.config()).config() == pool.config()
    assert torch.nn.MaxPool2d(**pool.config()).stride == [3, 3]


def test_conv2d_initialisation_uses_fan_in_of_the_kernel():
    net = Network([Conv2d(4, 64, (3, 5))], np.random.default_rng(0))
    bound = 1 / np.sqrt(4 * 3 * 5)
    for _, p in net.named_parameters():
        assert np.all(np.abs(p) <= bound) and np.abs(p).max() > 0.9 * bound


@pytest.mark.parametrize("padding,kernel", [("same", 3), ("same", (5, 1)), ("valid", 4), ("valid", (2, 3))])
def test_conv2d_string_padding_is_torchs(padding, kernel):
    rng = np.random.default_rng(1)
    net = Network([Conv2d(2, 3, kernel, padding=padding)], rng)
    reference = torch.nn.Sequential(torch.nn.Conv2d(2, 3, kernel, padding=padding)).double()  # torch's string padding
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    x = rng.normal(size=(2, 2, 6, 7))
    y = net(x)
    np.testing.assert_allclose(y, reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14)
    if padding == "same":
        assert y.shape == (2, 3, 6, 7)
    check_layer(net.layers[0], (2, 2, 6, 7), rng)  # all four maps, through the resolved int padding


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": 2}, "groups"),
    ({"dilation": 2}, "dilation"),
    ({"padding_mode": "reflect"}, "padding_mode"),
    ({"padding": "full"}, "'valid' or 'same'"),
    ({"padding": "same", "kernel_size": (3, 2)}, "even kernel_size"),
    ({"padding": "same", "stride": 2}, "stride 1"),
    ({"padding": -1}, "padding"),
    ({"stride": 0}, "stride"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": (1, 2, 3)}, "kernel_size"),
    ({"in_channels": 0}, "in_channels"),
    ({"out_channels": 2.0}, "out_channels"),
])
def test_conv2d_rejects_unsupported_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(**{"in_channels": 2, "out_channels": 3, "kernel_size": 3, **kwargs})


@pytest.mark.parametrize("kwargs,match", [
    ({"dilation": 2}, "dilation"),
    ({"ceil_mode": True}, "ceil_mode"),
    ({"return_indices": True}, "return_indices"),
    ({"padding": 2}, "at most half"),
    ({"stride": (1, 0)}, "stride"),
])
def test_maxpool2d_rejects_unsupported_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaxPool2d(**{"kernel_size": 3, **kwargs})


@pytest.mark.parametrize("layer,x_shape,match", [
    (Conv2d(3, 4, 3), (2, 2, 5, 5), r"expects input of shape \(N, 3, H, W\)"),
    (Conv2d(3, 4, 3), (3, 5, 5), r"expects input of shape \(N, 3, H, W\)"),
    (Conv2d(3, 4, 3, padding=(1, 0)), (2, 3, 1, 2), r"larger than the padded input \(3, 2\)"),
    (MaxPool2d(3), (2, 5, 5), r"expects input of shape \(N, C, H, W\)"),
    (MaxPool2d(3, padding=1), (1, 1, 4, 0), "larger than the padded input"),
], ids=repr)
def test_bad_input_shapes(layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(np.zeros(x_shape))


@pytest.mark.parametrize("rows,depth", [(4, 18), (18, 4), (5, 5)])
def test_weight_product_is_g_times_lowered_transposed_in_either_orientation(rows, depth):
    rng = np.random.default_rng(0)
    g, lowered = rng.normal(size=(rows, 40)), rng.normal(size=(depth, 40))
    np.testing.assert_allclose(weight_product(g, lowered), g @ lowered.T, rtol=1e-13)


@pytest.mark.parametrize("rows,depth,columns,width", [
    (16, 75, 16384, 820), (16, 144, 4096, 410), (16, 75, 500, 500), (64, 576, 1568, 1568), (4, 75, 4096, 2048)])
def test_column_block_keeps_blocks_small_for_openblas(rows, depth, columns, width):
    """Blocks of at most SMALL_PRODUCT multiply-adds, evened out; one block when the product is small
    already or when the blocks would be narrower than MIN_BLOCK (the DQN network's 3x3 layer)."""
    assert column_block(rows, depth, columns) == width
    assert width == columns or rows * depth * width <= SMALL_PRODUCT


@pytest.mark.parametrize("a_shape,b_shape", [((16, 75), (75, 2000)), ((2, 16, 75), (2, 75, 2000)),
                                             ((2, 16, 75), (1, 75, 2000)), ((3, 8), (8, 10))])
def test_blocked_product_is_the_matrix_product(a_shape, b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
    np.testing.assert_allclose(blocked_product(a, b), a @ b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("rows,depth", [(16, 75), (16, 144), (8, 300), (70, 10)])
def test_weight_product_in_groups_and_blocks_is_g_times_lowered_transposed(rows, depth):
    """Few rows: groups of at most SMALL_TN entries of the result (one group of 16 x 75, two of 16 x 72,
    two of 8 x 150; 70 x 10 is one) and the sum over the columns in blocks."""
    rng = np.random.default_rng(0)
    g, lowered = rng.normal(size=(2, rows, 3000)), rng.normal(size=(2, depth, 3000))
    np.testing.assert_allclose(weight_product(g, lowered), g @ lowered.transpose(0, 2, 1), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("args,x_shape", [((3, 4, 5, 2, 2), (16, 3, 32, 32)), ((16, 16, 3, 2, 1), (16, 16, 16, 16))],
                         ids=repr)
def test_conv2d_with_blocked_products_against_torch(args, x_shape, dtype):
    """The probe CNN's geometries at a batch whose products are cut into blocks (forward, input and,
    for the first, weight gradient)."""
    check_layer(Conv2d(*args), x_shape, np.random.default_rng(0), dtype, fd=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_blocked_ensemble_maps_are_the_lone_maps_bit_for_bit(dtype):
    """A geometry whose forward pass lowers and multiplies block by block (and keeps the images):
    the ensemble maps make the same products member by member as the lone maps, so they agree
    exactly; the R-maps lower the kept images whole."""
    E, rng = 2, np.random.default_rng(3)
    layer = Conv2d(4, 16, 5, 2, 2)
    assert layer._pixel_block(16, (1, 8, 4, 32, 32))  # blocked
    layer.params = {k: rng.normal(size=(E, *s)).astype(dtype) for k, s in layer.param_shapes.items()}
    x = rng.normal(size=(E, 8, 4, 32, 32)).astype(dtype)
    y, cache = layer.ensemble_forward(x)
    gy = rng.normal(size=y.shape).astype(dtype)
    grads = {k: np.empty((E, *s), dtype) for k, s in layer.param_shapes.items()}
    gx = layer.ensemble_backward(cache, gy, grads)
    members = [Conv2d(4, 16, 5, 2, 2) for _ in range(E)]
    for e, member in enumerate(members):
        member.params = {k: v[e] for k, v in layer.params.items()}
        ye, ce = member.forward(x[e])
        ge = {k: np.empty(s, dtype) for k, s in member.param_shapes.items()}
        np.testing.assert_array_equal(ye, y[e])
        np.testing.assert_array_equal(member.backward(ce, gy[e], ge), gx[e])
        for k in ge:
            np.testing.assert_array_equal(ge[k], grads[k][e])
