"""Kernel-side half of the autograder: its source is sent into each submission's kernel before any student code.

Not imported by the kit. :mod:`musicvae_course.grading.autograde` executes this file's text in a private namespace,
then calls :func:`install`, so nothing of it is importable by name or visible in the user namespace or the
input history. ``install`` imports the modules the source notebook uses, records how they look (functions,
classes, code objects), keeps references to pristine builtins in a closure, and registers a class named after
a per-kernel nonce. Each question's tests reach that class through ``object.__subclasses__()`` in an
``execute_request``'s ``user_expressions`` (evaluated without IPython's input transformers or history), undo
what student code replaced, run the tests in a copy of the user namespace with pristine builtins, and return a
result signed with a key that exists only in that request.
"""


def install(session_nonce, module_names, watched_prefixes, stdlib_modules):
    """Snapshot the pristine state and register ``Grader_<session_nonce>``; called once per kernel, first."""
    import atexit
    import builtins
    import hashlib
    import hmac
    import importlib
    import json
    import sys
    import threading
    import types
    import warnings

    from IPython import get_ipython

    # Pristine references, kept only in this closure.
    _exec, _compile, _dict, _list, _set, _type, _str, _len = exec, compile, dict, list, set, type, str, len
    _callable, _issubclass, _sorted, _id, _tuple = callable, issubclass, sorted, id, tuple
    _hmac_new, _sha256, _dumps = hmac.new, hashlib.sha256, json.dumps
    _settrace, _setprofile, _threading_settrace = sys.settrace, sys.setprofile, threading.settrace
    _type_setattr, _type_delattr = type.__setattr__, type.__delattr__
    _sys_modules, _module_type, _function_type = sys.modules, types.ModuleType, types.FunctionType
    _code_like_types = (
        type,
        types.ModuleType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        staticmethod,
        classmethod,
        property,
        types.MethodDescriptorType,
        types.WrapperDescriptorType,
        types.GetSetDescriptorType,
        types.MemberDescriptorType,
    )
    _immutable_flag = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: static and immutable types cannot be patched
    _missing = object()
    # IPython swaps these builtins in and out around each cell; they are not student tampering.
    _volatile_builtins = {
        "exit",
        "quit",
        "get_ipython",
        "display",
        "__IPYTHON__",
        "_",
        "__",
        "___",
        "input",
        "raw_input",
        "getpass",
    }

    shell = get_ipython()
    user_ns = shell.user_ns

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in module_names:
            try:
                importlib.import_module(name)
            except BaseException:  # a module the notebook cannot import either: the tests will say so
                pass

        def watched(name):
            return name in stdlib_modules or any(name == p or name.startswith(p + ".") for p in watched_prefixes)

        def code_like(value):
            return _callable(value) or _issubclass(_type(value), _code_like_types)

        modules, module_items, module_keys = {}, {}, {}
        classes, functions = {}, {}

        def note_function(value):
            if _type(value) is _function_type and _id(value) not in functions:
                functions[_id(value)] = (value, value.__code__, value.__defaults__, value.__kwdefaults__)

        for name, module in _list(sys.modules.items()):
            if not watched(name) or not isinstance(module, types.ModuleType):
                continue
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            modules[name] = module
            items = {k: v for k, v in _list(namespace.items()) if code_like(v)}
            if name == "builtins":
                items = {k: v for k, v in items.items() if k not in _volatile_builtins}
            module_items[name] = items
            module_keys[name] = _set(namespace)
            for value in items.values():
                note_function(value)
                if isinstance(value, type) and not (value.__flags__ & _immutable_flag) and _id(value) not in classes:
                    try:
                        class_dict = _dict(value.__dict__)
                    except BaseException:
                        continue
                    classes[_id(value)] = (value, {k: v for k, v in class_dict.items() if code_like(v)})
                    for member in class_dict.values():
                        note_function(getattr(member, "__func__", member))
        builtins_snapshot = _dict(builtins.__dict__)
        warning_filters = _list(warnings.filters)
        recorded = {}  # names of locked cells -> their value right after the cell ran
        startup_threads = {t.ident for t in threading.enumerate()}

    def restore():
        """Undo replaced functions, classes and modules; return what was changed, for the feedback."""
        changed = []
        _settrace(None)
        _setprofile(None)
        _threading_settrace(None)
        for name, module in modules.items():
            if _sys_modules.get(name, _missing) is not module:
                _sys_modules[name] = module
                changed.append(f"sys.modules[{name!r}]")
            namespace = module.__dict__
            for key, value in module_items[name].items():
                if namespace.get(key, _missing) is not value:
                    namespace[key] = value
                    changed.append(f"{name}.{key}")
            for key in _list(namespace):
                if key not in module_keys[name] and not (name == "builtins" and key in _volatile_builtins):
                    value = namespace[key]
                    if code_like(value) and _type(value) is not _module_type:
                        del namespace[key]
                        changed.append(f"{name}.{key} (added)")
        for cls, members in classes.values():
            current = cls.__dict__
            for key, value in members.items():
                if current.get(key, _missing) is not value:
                    try:
                        _type_setattr(cls, key, value)
                        changed.append(f"{cls.__module__}.{cls.__qualname__}.{key}")
                    except BaseException:
                        pass
            for key in _list(current):
                if key not in members and code_like(current[key]):
                    try:
                        _type_delattr(cls, key)
                        changed.append(f"{cls.__module__}.{cls.__qualname__}.{key} (added)")
                    except BaseException:
                        pass
        for function, code, defaults, kwdefaults in functions.values():
            if (
                function.__code__ is not code
                or function.__defaults__ is not defaults
                or function.__kwdefaults__ is not kwdefaults
            ):
                function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults
                changed.append(f"code of {function.__module__}.{function.__qualname__}")
        warnings.filters[:] = warning_filters
        return changed

    def safe_text(value, limit=500):
        try:
            text = _str(value)
        except BaseException:
            text = "<unprintable>"
        return text if _len(text) <= limit else text[:limit] + " ..."

    def record(names):
        """After a locked (instructor) cell ran: remember what its names are bound to."""
        for name in names:
            if name in user_ns:
                recorded[name] = value = user_ns[name]
                if _type(value) is _function_type:  # a helper's __code__ can be swapped in place too
                    functions[_id(value)] = (value, value.__code__, value.__defaults__, value.__kwdefaults__)
        return "recorded"

    def run(key, question_id, statements, module_bindings):
        """Run one question's tests; return ``payload + "\\n" + HMAC-SHA256(key, payload)``."""
        notes = ["restored " + item for item in restore()]
        threads = _sorted(t.name for t in threading.enumerate() if t.ident not in startup_threads and t.is_alive())
        if threads:
            notes.append("threads started by the notebook were running: " + ", ".join(threads))
        namespace = _dict(user_ns)
        for name, value in recorded.items():
            if user_ns.get(name, _missing) is not value:
                notes.append(f"{name}: rebound by the notebook; the tests used the locked cell's")
            namespace[name] = value
        for alias, module_name in module_bindings:
            if module_name in modules:
                namespace[alias] = modules[module_name]
        namespace["__builtins__"] = _dict(builtins_snapshot)
        namespace["__name__"] = "__main__"
        failure = None
        for index, (code, lineno, hidden) in enumerate(statements):
            try:
                _exec(_compile(code, "<tests of " + question_id + ">", "exec", 0, True, 0), namespace)
            except BaseException as exc:  # includes KeyboardInterrupt from the grader's time limit
                try:
                    ename = _type(exc).__name__
                except BaseException:
                    ename = "?"
                failure = {
                    "index": index,
                    "lineno": lineno,
                    "hidden": hidden,
                    "ename": safe_text(ename, 80),
                    "message": safe_text(exc),
                }
                break
        payload = _dumps(
            {
                "question": question_id,
                "status": "failed" if failure else "passed",
                "failure": failure,
                "notes": notes[:20],
            },
            sort_keys=True,
        )
        signature = _hmac_new(key.encode(), payload.encode(), _sha256).hexdigest()
        return payload + "\n" + signature

    grader = _type(
        "Grader_" + session_nonce,
        (object,),
        {"__slots__": (), "run": staticmethod(run), "record": staticmethod(record)},
    )
    # object.__subclasses__() holds classes weakly; atexit keeps this one alive without naming it anywhere.
    atexit.register(_tuple, (grader,))
    return len(modules)
