"""Streaming `G2.h5` out of the benchmark's encrypted `Img/G2.zip` (ZipCrypto or WinZip-AES).

ZipCrypto goes through fast-zip-decryption's C decrypter, WinZip-AES through `pyzipper`.
The member is streamed to a temporary file, removed when the `extracted_member` context ends.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pyzipper
from tqdm import tqdm

from fashion.core.stage import PipelineError
from fashion.data.release import MEMBER

_CHUNK_BYTES = 1 << 20  # read/decrypt granularity when extracting the zip member
_MAX_INFLATE = 32 << 20  # most bytes inflated at once (memory bound)


# --------------------------------------------------------------------------- the zip


def find_member(zip_path: Path, name: str = MEMBER) -> zipfile.ZipInfo:
    """The zip entry called `name`, in any folder of the archive."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise PipelineError(f"{zip_path}: unreadable zip, truncated or corrupt ({err})") from err
    for info in infos:
        if not info.is_dir() and info.filename.rsplit("/", 1)[-1] == name:
            return info
    listed = [i.filename for i in infos[:5]]
    raise PipelineError(f"{zip_path}: no {name} in the archive (members: {listed})")


def _dos_time(info: zipfile.ZipInfo) -> int:
    _, _, _, hour, minute, second = info.date_time
    return hour << 11 | minute << 5 | second // 2


def _zipcrypto_chunks(zip_path: Path, info: zipfile.ZipInfo, password: bytes) -> Iterator[bytes]:
    """Decrypted, inflated chunks of a ZipCrypto member; the password is checked up front.

    The decrypter is fast-zip-decryption's C implementation, used directly instead of its
    global monkeypatch of `zipfile` (which would change the stdlib for every other user).
    """
    from _zipdecrypter import StandardZipDecrypter  # the C core of fast-zip-decryption

    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise PipelineError(f"{zip_path}: unsupported compression {info.compress_type}")
    with open(zip_path, "rb") as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise PipelineError(f"{zip_path}: corrupt local header of {info.filename}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        raw.seek(name_len + extra_len, os.SEEK_CUR)
        decrypter = StandardZipDecrypter(password)
        check = decrypter(raw.read(12))[11]
        # The last header byte is the CRC's high byte, or the time's with a data descriptor.
        expected = _dos_time(info) >> 8 if info.flag_bits & 0x8 else info.CRC >> 24
        if check != expected:
            raise PipelineError(f"wrong password for {zip_path}")
        inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        left = info.compress_size - 12

        def read_decrypted() -> bytes:
            nonlocal left
            data = raw.read(min(_CHUNK_BYTES, left))
            if left > 0 and not data:
                raise PipelineError(f"{zip_path}: truncated in {info.filename}")
            left -= len(data)
            return decrypter.decrypt_bytes(data)

        # The decrypter holds the GIL but zlib and file writes release it: decrypting the next
        # block in a worker thread while this one inflates roughly hides the inflate time.
        with ThreadPoolExecutor(1) as worker:
            pending = worker.submit(read_decrypted)
            while data := pending.result():
                pending = worker.submit(read_decrypted)
                if not inflate:
                    yield data
                    continue
                # bounded output: flat images can inflate a thousandfold
                while data:
                    yield inflate.decompress(data, _MAX_INFLATE)
                    data = inflate.unconsumed_tail
        if inflate:
            yield inflate.flush()


def _pyzipper_chunks(zip_path: Path, info: zipfile.ZipInfo, password: bytes) -> Iterator[bytes]:
    """Chunks of a WinZip-AES (or unencrypted) member; pyzipper checks the password verifier."""
    with pyzipper.AESZipFile(zip_path) as zf:
        try:
            member = zf.open(info.filename, pwd=password)
        except RuntimeError as err:  # pyzipper: "Bad password for file ..."
            raise PipelineError(f"wrong password for {zip_path}") from err
        with member:
            while data := member.read(_CHUNK_BYTES):
                yield data


@contextmanager
def extracted_member(
    zip_path: Path, password: str, directory: Path, name: str = MEMBER, *, progress: bool = True
) -> Iterator[Path]:
    """Decrypt member `name` to a temporary file in `directory`; yield its path; remove it after.

    Streams in chunks (never the whole member in memory). ZipCrypto goes through
    fast-zip-decryption's C decrypter, WinZip-AES (compress_type 99) through pyzipper.
    A wrong password fails before any data is written; a CRC or size mismatch fails after.
    """
    info = find_member(zip_path, name)
    pwd = password.encode()
    zipcrypto = info.flag_bits & 0x1 and info.compress_type != 99
    chunks = (_zipcrypto_chunks if zipcrypto else _pyzipper_chunks)(zip_path, info, pwd)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        crc = size = 0
        bar = tqdm(
            total=info.file_size, desc=f"decrypting {name}", unit="B", unit_scale=True,
            disable=not progress,
        )  # fmt: skip
        with os.fdopen(fd, "wb") as out, bar:
            try:
                for data in chunks:
                    out.write(data)
                    if zipcrypto:  # pyzipper checks the CRC / HMAC itself
                        crc = zlib.crc32(data, crc)
                    size += len(data)
                    bar.update(len(data))
            except (zlib.error, zipfile.BadZipFile, EOFError) as err:
                raise PipelineError(f"{zip_path}: corrupt or truncated {name} ({err})") from err
        if size != info.file_size or (zipcrypto and crc != info.CRC):
            raise PipelineError(f"{zip_path}: corrupt {name} (size or CRC mismatch)")
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
