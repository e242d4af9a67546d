"""Every colab runs top to bottom at its tiny size, and its pair is in sync."""

import glob
import os

import jupytext
import nbclient
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
COLABS = sorted(glob.glob(os.path.join(ROOT, 'colabs', '*.py')))
# Colabs that need an optional extra (`pip install -e .[hf]`): skipped
# without it.
REQUIRES = {'hf_lora.py': ('torch', 'transformers')}


def test_there_are_colabs():
  assert COLABS


@pytest.mark.parametrize('path', COLABS, ids=os.path.basename)
def test_ipynb_pair_matches_py(path):
  py = jupytext.read(path)
  ipynb = jupytext.read(path[:-3] + '.ipynb')
  assert [c.source for c in py.cells] == [c.source for c in ipynb.cells], (
      f'run `jupytext --sync {path}`')


@pytest.mark.parametrize('path', COLABS, ids=os.path.basename)
def test_colab_executes(path, tmp_path, monkeypatch):
  for module in REQUIRES.get(os.path.basename(path), ()):
    pytest.importorskip(module)
  monkeypatch.setenv('POSTRAIN_COLAB_STEPS', '3')
  monkeypatch.setenv('POSTRAIN_COLAB_DATA', str(tmp_path / 'tfds'))
  monkeypatch.setenv('MPLBACKEND', 'Agg')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('PYTHONPATH', ROOT)
  nb = jupytext.read(path)
  nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(tmp_path)}}
                          ).execute()
  errors = [o for c in nb.cells for o in c.get('outputs', [])
            if o.get('output_type') == 'error']
  assert not errors
