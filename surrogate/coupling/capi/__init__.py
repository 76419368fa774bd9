"""Sources of the C ABI (`surrogate.h`), built into `libsurrogate.so` by
`surrogate.coupling.build_c_library`; nothing here is imported by Python."""
