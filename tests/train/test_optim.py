"""Schedules: the exact values optim_schedules.md names."""

import numpy as np
import pytest

from postrain import train


def test_rex_closed_form_and_bounds():
  s = train.rex_schedule(1.0, 100)
  assert float(s(0)) == pytest.approx(1.0)
  assert float(s(50)) == pytest.approx(2 / 3)
  assert float(s(100)) == pytest.approx(0.0)
  t = np.arange(101)
  vals = np.array([float(s(i)) for i in t])
  assert np.all(np.diff(vals) <= 1e-7)
  assert np.all(vals >= 1 - t / 100 - 1e-7)  # never below linear decay


def test_wsd_phases_and_boundaries():
  s = train.make_schedule('wsd', peak=2.0, total_steps=100, warmup_steps=10,
                          decay_steps=20, end_value=0.5)
  assert float(s(0)) == pytest.approx(0.0)
  for step in (10, 40, 80):
    assert float(s(step)) == pytest.approx(2.0)
  assert float(s(90)) == pytest.approx(1.25)  # halfway down the decay
  assert float(s(100)) == pytest.approx(0.5)


@pytest.mark.parametrize('kind', ['linear', 'rex', 'warmup_cosine',
                                  'constant'])
def test_warmup_then_peak(kind):
  s = train.make_schedule(kind, peak=1.0, total_steps=50, warmup_steps=5)
  assert float(s(0)) == pytest.approx(0.0)
  assert float(s(5)) == pytest.approx(1.0)
  assert float(s(50)) == pytest.approx(1.0 if kind == 'constant' else 0.0,
                                       abs=1e-6)


def test_unknown_names_fail_with_the_valid_list():
  with pytest.raises(ValueError, match='valid'):
    train.make_schedule('cosinus', peak=1.0, total_steps=1)
  with pytest.raises(ValueError, match='adamw'):
    train.make_optimizer('adam', lambda s: 1e-3)
