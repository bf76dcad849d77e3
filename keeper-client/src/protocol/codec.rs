//! Payload fields: little-endian integers, and length-prefixed (u32) byte strings with bounds.

use super::ProtocolError;

/// Builds a payload.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty payload.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Append a u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append an i32.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append a u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append a u32 length and the bytes. Lengths are bounded by the callers (far below 4 GiB);
    /// a longer slice is cut at `u32::MAX` bytes rather than written with a wrong length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v.get(..len as usize).unwrap_or(v));
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The payload.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a payload; every read checks the remaining length.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Read `payload` from its start.
    pub fn new(payload: &'a [u8]) -> Reader<'a> {
        Reader { buf: payload }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let (head, rest) =
            self.buf.split_first_chunk::<N>().ok_or(ProtocolError::Truncated(field))?;
        self.buf = rest;
        Ok(*head)
    }

    /// A u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.take::<4>(field).map(u32::from_le_bytes)
    }

    /// An i32.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.take::<4>(field).map(i32::from_le_bytes)
    }

    /// A u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        self.take::<8>(field).map(u64::from_le_bytes)
    }

    /// A u32 length (at most `max`) and that many bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], ProtocolError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(ProtocolError::TooLong { field, len, max });
        }
        if len > self.buf.len() {
            return Err(ProtocolError::Truncated(field));
        }
        let (v, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(v)
    }

    /// A UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<&'a str, ProtocolError> {
        std::str::from_utf8(self.bytes(field, max)?)
            .map_err(|_| ProtocolError::Invalid { field, reason: "not UTF-8" })
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Check that every byte was read.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ProtocolError::Trailing(n)),
        }
    }
}
