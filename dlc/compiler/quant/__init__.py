"""The calibration and quantization math behind `dlc quantize` (issue 12):

* `plan`: `QuantPlan`, what a calibration produced (ranges per site, layers kept float), with JSON;
* `calibrate`: range observers (minmax, percentile, entropy) that accumulate over batches;
* `scales`: ranges -> scale/zero point, weight scales, fixed-point multipliers, as pinned;
* `sites`: `quant_sites(g)`, the conv2d/dense layers a plan quantizes and the values to observe.

The passes that use them are `passes/quantize.py` and `passes/lower_int8.py`;
the ops are in `ops/quant.py`.
"""
from .calibrate import METHODS, EntropyObserver, MinMaxObserver, Observer, PercentileObserver, make_observer  # noqa: F401
from .plan import QuantPlan  # noqa: F401
from .scales import activation_qparams, fixed_point_multipliers, weight_scales  # noqa: F401
from .sites import Site, observed_values, quant_sites  # noqa: F401
