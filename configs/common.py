"""Helpers shared by config files."""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a config argument like `tiny` or `tiny,steps=50` or `size=tiny`.

  A bare word `w` sets the boolean `w=True` when `w` is a boolean default,
  else the first key's value. Values take the type of their default.

  Args:
    arg: the text after `:` in `--config=configs/x.py:ARG`.
    **defaults: the known keys and their default values.

  Returns:
    A locked ConfigDict of the parsed values.
  """
  out = ml_collections.ConfigDict(defaults)
  first = next(iter(defaults)) if defaults else None
  for token in filter(None, (arg or '').split(',')):
    if '=' in token:
      key, value = token.split('=', 1)
    elif isinstance(defaults.get(token), bool):
      key, value = token, 'true'
    else:
      key, value = first, token
    if key not in defaults:
      raise KeyError(f'config arg {key!r} unknown; valid: {sorted(defaults)}.')
    kind = type(defaults[key])
    if kind is bool:
      out[key] = value.lower() in ('1', 'true', 'yes')
    else:
      out[key] = kind(value)
  out.lock()
  return out
