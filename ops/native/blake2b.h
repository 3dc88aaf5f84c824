// BLAKE2b (RFC 7693), keyed, for the record builder's document keys: the same digests as Python's
// hashlib.blake2b(data, digest_size=n, key=key), computed without a Python object per document.
#ifndef RESEARCH_OPS_NATIVE_BLAKE2B_H_
#define RESEARCH_OPS_NATIVE_BLAKE2B_H_

#include <cstddef>
#include <cstdint>

namespace research {

// Writes the `digest_size`-byte BLAKE2b of data[0, size) keyed by key[0, key_size) to `digest`.
// Requires 1 <= digest_size <= 64 and key_size <= 64 (checked by the caller).
void Blake2b(const void* data, size_t size, const void* key, size_t key_size, size_t digest_size,
             uint8_t* digest);

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_BLAKE2B_H_
