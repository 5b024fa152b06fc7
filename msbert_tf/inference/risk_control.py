"""Risk-controlling threshold selection: Learn then Test (Angelopoulos et al.,
2021) by fixed-sequence testing, as CALM (Schuster et al., 2022) uses it for
early exit.

Candidates are ordered from the safest (the full model) to the fastest. For
each, the null hypothesis "its risk on new rows exceeds `max_risk`" is
tested with the exact binomial tail of its error count on the `n`
calibration rows; testing stops at the first candidate whose p-value is
above `1 - confidence`, and the last one certified is chosen. Fixed-sequence
testing needs no multiple-testing correction, so with probability at least
`confidence` over the draw of the calibration rows, the chosen candidate's
risk on rows from the same distribution is at most `max_risk`.

```python
import numpy as np
losses = np.zeros((3, 500), bool); losses[2, :40] = True  # 8% errors at the fastest
fixed_sequence(losses, max_risk=0.01, confidence=0.9).chosen  # 1
```
"""

import dataclasses
import math

import numpy as np
from scipy import stats

from msbert_tf.errors import UserInputError

RISKS = ("disagreement", "accuracy_drop")
DEFAULT_RISK = "disagreement"
DEFAULT_MAX_RISK = 0.01
DEFAULT_CONFIDENCE = 0.9
# Regression: two values disagree when further apart than this (score points).
DEFAULT_DISAGREEMENT_TOLERANCE = 0.25


def parse_final_exits(values):
    """`--final_exits`' strings as whole numbers (here, not in the CLI module,
    so that it is testable without defining the CLI's flags)."""
    if not values:
        raise UserInputError("--final_exits is empty: give at least one, e.g. 1 (the last exit alone).")
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise UserInputError(f"--final_exits takes whole numbers, e.g. 1,2,3,4; got {','.join(values)}.") from None


class TooFewRows(UserInputError):
    """The calibration rows cannot certify anything at the asked level."""


def check_levels(max_risk, confidence):
    for name, value in (("max_risk", max_risk), ("confidence", confidence)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise UserInputError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")


def min_calibration_rows(max_risk, confidence):
    """Fewest rows on which a candidate with no error at all is certified."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - max_risk))


def p_value(errors, n, max_risk):
    """P(Binomial(n, max_risk) <= errors): small when the risk is below max_risk."""
    return float(stats.binom.cdf(errors, n, max_risk))


def upper_bound(errors, n, confidence):
    """One-sided Clopper-Pearson bound on the risk, at `confidence`."""
    return 1.0 if errors >= n else float(stats.beta.ppf(confidence, errors + 1, n - errors))


@dataclasses.dataclass
class Certified:
    chosen: int  # index of the fastest certified candidate; -1 when none is
    p_values: list  # of the candidates tested, in order (the last one failed unless all passed)


def fixed_sequence(losses, max_risk, confidence):
    """`losses`: candidates x rows, True where a row suffers the risk (the
    candidates ordered safest first)."""
    check_levels(max_risk, confidence)
    losses = np.asarray(losses, bool)
    n = losses.shape[1]
    needed = min_calibration_rows(max_risk, confidence)
    if n < needed:
        raise TooFewRows(
            f"{n} calibration rows cannot certify a risk of {max_risk:g} at confidence {confidence:g}: "
            f"that needs at least {needed} rows (with no error among them); give more rows or a larger max_risk."
        )
    chosen, p_values = -1, []
    for i, row in enumerate(losses):
        p_values.append(p_value(int(row.sum()), n, max_risk))
        if p_values[-1] > 1 - confidence:
            break
        chosen = i
    return Certified(chosen, p_values)
