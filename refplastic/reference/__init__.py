"""Reference files: exact numbers for checking another implementation (docs/reference-format.md).

:func:`write_suite` writes the built-in suite, :func:`compute_file` completes a user's file of
cases with every quantity, :func:`verify_files` compares a file of someone else's numbers with a
reference and :func:`format_table` prints the result.
"""

from .compute import compute_case, compute_file, write_reference
from .format import FORMAT, VERSION, Case, read_cases, read_datasets
from .suite import suite_cases, suite_datasets, write_suite
from .verify import compare, format_table, verify_files
