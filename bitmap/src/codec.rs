//! Little-endian field access and checksums for 4 KiB metadata blocks.

/// Reads a little-endian `u16` at `off`.
pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}

/// Reads a little-endian `u32` at `off`.
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian `u64` at `off`.
pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Writes a little-endian `u16` at `off`.
pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian `u32` at `off`.
pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian `u64` at `off`.
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// crc32c of `block` with the 4 bytes at `crc_off` taken as zero.
pub(crate) fn block_crc(block: &[u8], crc_off: usize) -> u32 {
    let c = crc32c::crc32c(&block[..crc_off]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &block[crc_off + 4..])
}

/// Verifies the crc stored at `crc_off`, returning `(stored, computed)` on mismatch.
pub(crate) fn check_crc(block: &[u8], crc_off: usize) -> Result<(), (u32, u32)> {
    let stored = get_u32(block, crc_off);
    let computed = block_crc(block, crc_off);
    if stored == computed {
        Ok(())
    } else {
        Err((stored, computed))
    }
}

/// Stores the crc of `block` at `crc_off`.
pub(crate) fn seal(block: &mut [u8], crc_off: usize) {
    let crc = block_crc(block, crc_off);
    put_u32(block, crc_off, crc);
}
