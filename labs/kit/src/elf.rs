//! Just enough ELF to answer one question: which program interpreter (dynamic loader)
//! does the kernel run for this binary? That is the PT_INTERP program header; a
//! statically linked binary has none.

use std::path::{Path, PathBuf};

use crate::{LabError, Result};

const PT_INTERP: u32 = 3;

/// Returns the interpreter path named in `binary`'s PT_INTERP header, or `None` if static.
pub fn interpreter(binary: &Path) -> Result<Option<PathBuf>> {
    let bytes = std::fs::read(binary).map_err(LabError::io("read", binary))?;
    interpreter_of(&bytes).map_err(|why| LabError::Setup(format!("{}: {why}", binary.display())))
}

/// The same, on the bytes of an ELF file (64-bit little-endian, as on x86_64 and aarch64).
pub fn interpreter_of(bytes: &[u8]) -> std::result::Result<Option<PathBuf>, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("only 64-bit little-endian ELF files are supported".into());
    }
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at =
        |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(|b| u64::from_le_bytes(b) as usize);
    let truncated = || "truncated ELF header".to_string();
    let table = u64_at(0x20).ok_or_else(truncated)?;
    let entry_size = u16_at(0x36).ok_or_else(truncated)?;
    let entries = u16_at(0x38).ok_or_else(truncated)?;
    for index in 0..entries {
        let header = table + index * entry_size;
        if u32_at(header).ok_or_else(truncated)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(header + 8).ok_or_else(truncated)?;
        let size = u64_at(header + 32).ok_or_else(truncated)?;
        let raw = bytes.get(offset..offset + size).ok_or_else(truncated)?;
        let path = raw.split(|b| *b == 0).next().unwrap_or_default();
        return Ok(Some(PathBuf::from(String::from_utf8_lossy(path).into_owned())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(interpreter_of(b"#!/bin/sh\necho hi\n").is_err());
    }

    #[test]
    fn finds_the_loader_of_a_dynamic_host_binary() {
        // /bin/sh exists on every machine these tests run on, and Debian's is dynamic.
        let loader = interpreter(Path::new("/bin/sh")).expect("readable ELF");
        let loader = loader.expect("/bin/sh is dynamically linked here");
        assert!(loader.to_string_lossy().contains("ld-"), "unexpected loader {loader:?}");
    }
}
