/* C half of libsurrogate, compiled by cffi together with the wrappers of surrogate.h.
 * The build defines SURROGATE_SITE_DIRS: the site-packages folders (':'-separated) of the
 * Python environment the library was built with. */
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate.h"

/* A host program (Fortran, C) is not a Python executable, so the interpreter cffi starts on
 * the first call would look only at the base installation's packages, not at the virtual
 * environment holding jax, numpy and cffi's own backend. Prepending that environment's
 * folders to PYTHONPATH when the library is loaded, before any Python starts, fixes it.
 * Inside a running Python (ctypes), the library uses that interpreter as it is. */
__attribute__((constructor)) static void surrogate_set_pythonpath(void)
{
    const char *old;
    size_t size;
    char *value;

    if (Py_IsInitialized())
        return;
    old = getenv("PYTHONPATH");
    size = strlen(SURROGATE_SITE_DIRS) + (old ? strlen(old) + 1 : 0) + 1;
    value = malloc(size);
    if (value == NULL)
        return;
    strcpy(value, SURROGATE_SITE_DIRS);
    if (old != NULL && old[0] != '\0') {
        strcat(value, ":");
        strcat(value, old);
    }
    setenv("PYTHONPATH", value, 1);
    free(value);
}
