/*
 * _execr: execr's synchronous guest -> host channel.
 *
 *     _execr.call(data: bytes) -> bytes
 *
 * ABI (shared with execr's scientific runtime, so one host implementation
 * serves both binaries):
 *
 *   import  host.call(i32 ptr, i32 len, i32 out_ptr_ptr, i32 out_len_ptr) -> i32
 *   export  host_alloc(i32 size) -> i32 ptr     (malloc-backed)
 *
 *   host.call returns
 *      0  ok: the host allocated the response in guest memory through
 *         host_alloc and stored its address at out_ptr_ptr and its length at
 *         out_len_ptr (both little-endian i32).  The guest copies it into a
 *         bytes object and frees the buffer.
 *     -1  no host function is registered for this run:
 *         RuntimeError("no host functions in this run")
 *     -2  (or anything else) host fault: RuntimeError
 *
 * The module opens no other path to the host.
 */

#ifndef Py_BUILD_CORE_BUILTIN
#  define Py_BUILD_CORE_BUILTIN 1
#endif
#define PY_SSIZE_T_CLEAN
#include "Python.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__wasm__)
__attribute__((import_module("host"), import_name("call")))
int32_t execr_host_call(int32_t ptr, int32_t len, int32_t out_ptr_ptr, int32_t out_len_ptr);

__attribute__((export_name("host_alloc"), used, visibility("default")))
int32_t
host_alloc(int32_t size)
{
    /* malloc(0) may return NULL: always ask for at least one byte. */
    return (int32_t)(uintptr_t)malloc(size > 0 ? (size_t)size : 1);
}
#else
/* Native builds (not used by execr): behave as if no host were attached. */
static int32_t
execr_host_call(int32_t ptr, int32_t len, int32_t out_ptr_ptr, int32_t out_len_ptr)
{
    (void)ptr; (void)len; (void)out_ptr_ptr; (void)out_len_ptr;
    return -1;
}
#endif

PyDoc_STRVAR(execr_call_doc,
"call($module, data, /)\n--\n\n"
"Send data (bytes) to the host and return the host's answer (bytes).\n\n"
"Raises RuntimeError when no host function is registered for this run,\n"
"or when the host reports a fault.");

static PyObject *
execr_call(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    int32_t out_ptr = 0;
    int32_t out_len = 0;
    int32_t rc;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len > INT32_MAX) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_OverflowError, "_execr.call: data too large");
        return NULL;
    }
    /* The host runs synchronously and cannot re-enter Python, so the GIL is
       kept: there is only one thread in the guest anyway. */
    rc = execr_host_call((int32_t)(uintptr_t)view.buf, (int32_t)view.len,
                         (int32_t)(uintptr_t)&out_ptr,
                         (int32_t)(uintptr_t)&out_len);
    PyBuffer_Release(&view);

    if (rc == -1) {
        PyErr_SetString(PyExc_RuntimeError, "no host functions in this run");
        return NULL;
    }
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "host call failed (code %d)", (int)rc);
        return NULL;
    }
    if (out_len < 0 || (out_len > 0 && out_ptr == 0)) {
        free((void *)(uintptr_t)out_ptr);
        PyErr_SetString(PyExc_RuntimeError, "host call returned an invalid buffer");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(
        out_len ? (const char *)(uintptr_t)out_ptr : "", (Py_ssize_t)out_len);
    free((void *)(uintptr_t)out_ptr);
    return result;
}

static PyMethodDef execr_methods[] = {
    {"call", execr_call, METH_O, execr_call_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot execr_slots[] = {
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

PyDoc_STRVAR(execr_doc,
"execr's synchronous channel from the guest to the host (host functions).");

static struct PyModuleDef execr_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_execr",
    .m_doc = execr_doc,
    .m_size = 0,
    .m_methods = execr_methods,
    .m_slots = execr_slots,
};

PyMODINIT_FUNC
PyInit__execr(void)
{
    return PyModuleDef_Init(&execr_module);
}
