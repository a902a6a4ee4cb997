"""The user's source file as it arrives: CSV or Parquet, text encoding, CSV dialect.

Everything here looks at raw bytes or builds the DuckDB ``read_csv`` call; turning rows into the
normalized table is :mod:`mcp_sales.normalize`'s job.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Literal

from mcp_sales.errors import DataError
from mcp_sales.sql import lit

_SAMPLE_BYTES = 1 << 20
# Encodings charset-normalizer may report that are not a Western single-byte code page. Any other
# legacy guess on a short sample (cp1250, cp850, mac_roman, ...) is read as cp1252: that is what
# spreadsheet exports in the Americas and Western Europe are, and the guesses differ only there.
_NON_LATIN = frozenset(
    (
        *("cp1251", "koi8_r", "koi8_u", "iso8859_5", "mac_cyrillic", "cp866", "cp855"),  # Cyrillic
        *("cp1253", "iso8859_7", "cp1255", "iso8859_8", "cp1256", "iso8859_6", "cp874", "tis_620"),
        *("big5", "big5hkscs", "gb2312", "gbk", "gb18030", "hz"),  # Chinese
        *("shift_jis", "cp932", "euc_jp", "iso2022_jp", "euc_kr", "cp949", "johab", "iso2022_kr"),
        *("utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"),
    )
)


def sniff_kind(source: Path) -> Literal["csv", "parquet"]:
    """Parquet by its magic bytes, CSV otherwise; refuse empty and obviously non-tabular files."""
    try:
        with source.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise DataError(f"cannot read data file {source} ({exc.strerror}); check its permissions") from None
    if not head:
        raise DataError(
            f"data file {source.name} is empty; export the sales data again or pass another --data file"
        )
    if head.startswith(b"PAR1"):
        return "parquet"
    if source.suffix.lower() in (".parquet", ".pq"):
        raise DataError(f"data file {source.name} is not a valid Parquet file; export it again")
    if head.startswith(b"\x1f\x8b"):
        raise DataError(
            f"data file {source.name} is gzip-compressed; decompress it (gunzip) and pass the CSV"
        )
    if head.startswith(b"PK\x03\x04"):
        raise DataError(
            f"data file {source.name} looks like an Excel or zip file; save it as CSV and pass that"
        )
    return "csv"


def detect_encoding(source: Path) -> str:
    """The text encoding of a CSV file, judged from its beginning and end."""
    with source.open("rb") as f:
        head = f.read(_SAMPLE_BYTES)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(len(head), size - _SAMPLE_BYTES // 4))
        tail = f.read()
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8"),  # DuckDB skips a UTF-8 byte order mark itself
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > len(odd) * 0.3:
            return "utf-16-le"
        if even.count(0) > len(even) * 0.3:
            return "utf-16-be"
        raise DataError(
            f"data file {source.name} is not a CSV or Parquet file (it looks binary); export it as CSV"
        )
    if _is_utf8(head, partial_end=len(head) == _SAMPLE_BYTES) and _is_utf8(tail, partial_start=True):
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    guess = best.encoding if best is not None else "cp1252"
    return guess if guess in _NON_LATIN else "cp1252"


def _is_utf8(sample: bytes, *, partial_start: bool = False, partial_end: bool = False) -> bool:
    """Whether ``sample`` is UTF-8, allowing a character cut at a sampled edge."""
    if partial_start:
        sample = sample[next((i for i, b in enumerate(sample[:4]) if b & 0xC0 != 0x80), 0) :]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not partial_end)
    except UnicodeDecodeError:
        return False
    return True


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode bytes cp1252 leaves undefined (0x81, 0x8d, ...) as their latin-1 characters."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("mcp_sales_latin1", _latin1_fallback)


def utf8_copy(source: Path, encoding: str, work: Path) -> Path:
    """The CSV as UTF-8: the file itself, or a streamed transcoded copy in ``work``."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(
            f"unknown encoding {encoding!r} for {source.name}; use one like utf-8, cp1252, latin-1 or utf-16"
        ) from None
    if codec == "utf-8":
        return source
    path = work / "utf8.csv"
    decoder = codecs.getincrementaldecoder(codec)(
        errors="mcp_sales_latin1" if codec == "cp1252" else "replace"
    )
    with source.open("rb") as raw, path.open("w", encoding="utf-8", newline="") as out:
        while chunk := raw.read(4 << 20):
            out.write(decoder.decode(chunk))
        out.write(decoder.decode(b"", final=True))
    return path


def read_csv_sql(path: Path) -> str:
    """A DuckDB ``read_csv`` of a UTF-8 CSV with a header line."""
    # Everything as text: ids keep leading zeros, and bad values are reported by us, with the column.
    options = "header = true, skip = 0, all_varchar = true"
    delimiter = _header_delimiter(path)
    if delimiter is not None:
        # Fixed from the header line: on a damaged file DuckDB's sniffer would otherwise guess some
        # other layout and report misleading columns instead of the broken line.
        options += f", delim = {lit(delimiter)}"
    return f"read_csv({lit(str(path))}, {options})"


def first_bad_line(path: Path, max_lines: int = 2_000_000) -> str | None:
    """Where a CSV stops fitting its header, e.g. "line 7 has 9 fields but the header has 7"."""
    import csv

    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=_header_delimiter(path) or ",", strict=True)
        start = 1
        try:
            header = next(reader, [])
            while reader.line_num < max_lines:
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return None
                if row and len(row) != len(header):
                    return f"line {start} has {len(row)} fields but the header has {len(header)}"
        except csv.Error:
            return f"line {start} has an unbalanced quote"
    return None


def _header_delimiter(path: Path) -> str | None:
    """The separator used in the header line (the most frequent of , ; tab |), if any."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        header = f.readline(1 << 16)
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None
