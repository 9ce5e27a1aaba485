"""Module constructor arguments from a config section: the section's keys that name fields of the module."""

import dataclasses


def fields_of(module_cls, section, **overrides):
  """{field: section[field]} for the fields of `module_cls` present in `section`, lists as tuples, plus overrides."""
  names = {f.name for f in dataclasses.fields(module_cls)} - {"parent", "name"}
  kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in section.items() if key in names}
  kwargs.update(overrides)
  return kwargs
