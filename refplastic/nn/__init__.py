"""Layers, losses, initialisation, optimizers, the sequential network and ensembles of it."""

from .activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .build import LAYER_TYPES, build_layer
from .conv import Conv2d
from .ensemble import Ensemble
from .flatten import Flatten
from .layer import Layer
from .layernorm import LayerNorm
from .linear import Linear
from .losses import ClippedGradientL2Loss, CrossEntropyLoss, HuberLoss, MSELoss, make_loss
from .network import Network, as_dtype
from .optim import SGD, Adam, AdamW, RMSprop, make_optimizer
from .pool import MaxPool2d
from .spectral_norm import SpectralNormLinear
