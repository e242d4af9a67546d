"""LM sampling with an explicit KV cache: token pickers and `sample`."""

from postrain.sampling._sampler import bucket_length
from postrain.sampling._sampler import filter_top_k
from postrain.sampling._sampler import filter_top_p
from postrain.sampling._sampler import greedy
from postrain.sampling._sampler import left_align
from postrain.sampling._sampler import make_picker
from postrain.sampling._sampler import Picker
from postrain.sampling._sampler import sample
from postrain.sampling._sampler import SampleOutput
from postrain.sampling._sampler import SamplingState
from postrain.sampling._sampler import trace_count
