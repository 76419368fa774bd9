"""Sources of the C ABI (`surrogate.h`), built into `libsurrogate.so` by
`surrogate.export.build_c_library`; nothing here is imported by Python."""
