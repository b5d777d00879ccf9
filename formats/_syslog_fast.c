/*
 * The compiled fast path of formats.syslog: a well-formed RFC 5424 message with a nil
 * STRUCTURED-DATA, parsed into the same Event as SyslogParser.parse builds (its Python twin).
 *
 * parse(data, peer, received_at) returns the Event, or calls the fallback given to
 * set_fallback (the Python parser) for everything else: RFC 3164 and its variants,
 * SD-ELEMENTs, leading junk, a PRI above 191, anything malformed. So the fast path never has
 * to agree with the Python one on a rejection: it only takes what it can match exactly as
 * `formats.syslog._RFC5424` does:
 *
 *   '<' 1-3 digits '>' spaces '1' ' ' TIMESTAMP ' ' HOST ' ' APP ' ' PROCID ' ' MSGID ' '
 *   ( '-' ( ' ' [BOM] | end ) )
 *
 * where TIMESTAMP is '-' or 4 digits '-' 2 digits '-' 2 digits 'T'|'t' and any bytes but a
 * space, the other header fields one or more bytes but a space, and "end" the end of the
 * message once its trailing LF, CR and NUL are cut. Text is decoded as UTF-8 with
 * backslashreplace, as the Python twin does. tests/unit/test_syslog_fast.py runs both on the
 * same inputs (hypothesis); TRAPGATE_PURE=1 keeps this module out.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *event_type;  /* formats.Event */
static PyObject *fallback;    /* the Python parser's parse(data, peer, received_at) */
static PyObject *s_syslog, *s_rfc5424;
static PyObject *k_facility, *k_severity, *k_timestamp, *k_hostname, *k_app_name, *k_procid,
    *k_msgid, *k_structured_data, *k_msg, *k_protocol;

static PyObject *
call_fallback(PyObject *const *args)
{
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "formats._syslog_fast: set_fallback was not called");
        return NULL;
    }
    return PyObject_Vectorcall(fallback, args, 3, NULL);
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* One header field: one or more bytes but a space, ending at a space. Returns the index of
 * that space, or -1. */
static inline Py_ssize_t
field_end(const unsigned char *s, Py_ssize_t i, Py_ssize_t end)
{
    Py_ssize_t start = i;
    while (i < end && s[i] != ' ')
        i++;
    return (i > start && i < end) ? i : -1;
}

/* NILVALUE '-' as None, else the field decoded (a new reference, or NULL on error). */
static PyObject *
text_or_none(const unsigned char *s, Py_ssize_t start, Py_ssize_t stop)
{
    if (stop - start == 1 && s[start] == '-')
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8((const char *)s + start, stop - start, "backslashreplace");
}

static PyObject *
fast_parse(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "parse(data, peer, received_at)");
        return NULL;
    }
    PyObject *data = args[0], *peer = args[1], *received_at = args[2];
    if (!PyBytes_CheckExact(data) || !PyTuple_Check(peer) || PyTuple_GET_SIZE(peer) < 1)
        return call_fallback(args);
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data);
    while (end > 0 && (s[end - 1] == '\r' || s[end - 1] == '\n' || s[end - 1] == '\0'))
        end--;
    if (end == 0 || s[0] != '<')
        return call_fallback(args);
    /* PRI */
    Py_ssize_t i = 1;
    long pri = 0;
    while (i < end && i <= 3 && is_digit(s[i]))
        pri = pri * 10 + (s[i++] - '0');
    if (i == 1 || i >= end || s[i] != '>' || pri > 191)
        return call_fallback(args);
    i++;
    while (i < end && s[i] == ' ')
        i++;
    if (end - i < 2 || s[i] != '1' || s[i + 1] != ' ')
        return call_fallback(args);
    i += 2;
    /* TIMESTAMP */
    Py_ssize_t ts_start = i, ts_end;
    if (i < end && s[i] == '-') {
        if (i + 1 >= end || s[i + 1] != ' ')
            return call_fallback(args);
        ts_end = i + 1;
    } else {
        static const char shape[] = "dddd-dd-dd";
        if (end - i < 11)
            return call_fallback(args);
        for (int k = 0; k < 10; k++) {
            unsigned char c = s[i + k];
            if (shape[k] == 'd' ? !is_digit(c) : c != '-')
                return call_fallback(args);
        }
        if (s[i + 10] != 'T' && s[i + 10] != 't')
            return call_fallback(args);
        ts_end = i + 11;
        while (ts_end < end && s[ts_end] != ' ')
            ts_end++;
        if (ts_end >= end)
            return call_fallback(args);
    }
    /* HOSTNAME, APP-NAME, PROCID, MSGID */
    Py_ssize_t starts[4], stops[4];
    i = ts_end + 1;
    for (int f = 0; f < 4; f++) {
        Py_ssize_t stop = field_end(s, i, end);
        if (stop < 0)
            return call_fallback(args);
        starts[f] = i;
        stops[f] = stop;
        i = stop + 1;
    }
    /* A nil STRUCTURED-DATA: '-', then a space (and a BOM) or the end. */
    if (i >= end || s[i] != '-')
        return call_fallback(args);
    i++;
    if (i < end) {
        if (s[i] != ' ')
            return call_fallback(args);
        i++;
        if (end - i >= 3 && s[i] == 0xEF && s[i + 1] == 0xBB && s[i + 2] == 0xBF)
            i += 3;
    }
    Py_ssize_t msg_start = i;

    PyObject *timestamp = NULL, *hostname = NULL, *app_name = NULL, *procid = NULL,
             *msgid = NULL, *msg = NULL, *msg_raw = NULL, *facility = NULL, *severity = NULL,
             *pri_obj = NULL, *fields = NULL, *sd = NULL, *identity = NULL, *event = NULL;
    if (!(timestamp = text_or_none(s, ts_start, ts_end)) ||
        !(hostname = text_or_none(s, starts[0], stops[0])) ||
        !(app_name = text_or_none(s, starts[1], stops[1])) ||
        !(procid = text_or_none(s, starts[2], stops[2])) ||
        !(msgid = text_or_none(s, starts[3], stops[3])) ||
        !(msg_raw = PyBytes_FromStringAndSize((const char *)s + msg_start, end - msg_start)) ||
        !(msg = PyUnicode_DecodeUTF8((const char *)s + msg_start, end - msg_start,
                                     "backslashreplace")) ||
        !(pri_obj = PyLong_FromLong(pri)) || !(facility = PyLong_FromLong(pri >> 3)) ||
        !(severity = PyLong_FromLong(pri & 7)) || !(sd = PyDict_New()) ||
        !(fields = PyDict_New()))
        goto done;
    if (PyDict_SetItem(fields, k_facility, facility) || PyDict_SetItem(fields, k_severity, severity) ||
        PyDict_SetItem(fields, k_timestamp, timestamp) || PyDict_SetItem(fields, k_hostname, hostname) ||
        PyDict_SetItem(fields, k_app_name, app_name) || PyDict_SetItem(fields, k_procid, procid) ||
        PyDict_SetItem(fields, k_msgid, msgid) || PyDict_SetItem(fields, k_structured_data, sd) ||
        PyDict_SetItem(fields, k_msg, msg) || PyDict_SetItem(fields, k_protocol, s_rfc5424))
        goto done;
    PyObject *who = hostname == Py_None ? PyTuple_GET_ITEM(peer, 0) : hostname;
    identity = PyTuple_Pack(9, pri_obj, timestamp, who, app_name, procid, msgid, Py_None, msg_raw,
                            Py_None);
    if (identity == NULL)
        goto done;
    {
        /* tuple.__new__(Event, items): what Event._make does, without its Python frame. */
        PyObject *items = PyTuple_Pack(6, s_syslog, peer, received_at, fields, data, identity);
        PyObject *new_args = items == NULL ? NULL : PyTuple_Pack(1, items);
        if (new_args != NULL)
            event = PyTuple_Type.tp_new((PyTypeObject *)event_type, new_args, NULL);
        Py_XDECREF(new_args);
        Py_XDECREF(items);
    }
done:
    Py_XDECREF(timestamp);
    Py_XDECREF(hostname);
    Py_XDECREF(app_name);
    Py_XDECREF(procid);
    Py_XDECREF(msgid);
    Py_XDECREF(msg);
    Py_XDECREF(msg_raw);
    Py_XDECREF(pri_obj);
    Py_XDECREF(facility);
    Py_XDECREF(severity);
    Py_XDECREF(sd);
    Py_XDECREF(fields);
    Py_XDECREF(identity);
    return event;
}

static PyObject *
set_fallback(PyObject *self, PyObject *func)
{
    (void)self;
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "set_fallback needs a callable");
        return NULL;
    }
    Py_INCREF(func);
    Py_XSETREF(fallback, func);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))fast_parse, METH_FASTCALL,
     "parse(data, peer, received_at): the Event of a well-formed RFC 5424 message with a nil "
     "STRUCTURED-DATA; anything else goes to the fallback."},
    {"set_fallback", set_fallback, METH_O, "set_fallback(parse): where what the fast path does not take goes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "formats._syslog_fast", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__syslog_fast(void)
{
    PyObject *base = PyImport_ImportModule("formats._base");
    if (base == NULL)
        return NULL;
    event_type = PyObject_GetAttrString(base, "Event");
    Py_DECREF(base);
    if (event_type == NULL)
        return NULL;
    if (!(s_syslog = PyUnicode_InternFromString("syslog")) ||
        !(s_rfc5424 = PyUnicode_InternFromString("rfc5424")) ||
        !(k_facility = PyUnicode_InternFromString("facility")) ||
        !(k_severity = PyUnicode_InternFromString("severity")) ||
        !(k_timestamp = PyUnicode_InternFromString("timestamp")) ||
        !(k_hostname = PyUnicode_InternFromString("hostname")) ||
        !(k_app_name = PyUnicode_InternFromString("app_name")) ||
        !(k_procid = PyUnicode_InternFromString("procid")) ||
        !(k_msgid = PyUnicode_InternFromString("msgid")) ||
        !(k_structured_data = PyUnicode_InternFromString("structured_data")) ||
        !(k_msg = PyUnicode_InternFromString("msg")) ||
        !(k_protocol = PyUnicode_InternFromString("protocol")))
        return NULL;
    return PyModule_Create(&module);
}
