"""The one reader of SAM/CloudFormation templates on the Python side.

Used by check_template.py (static invariants) and invoke_events.py (a function's environment,
resolved). cfn-lint's own loader reads the template, so the short intrinsic tags (!Ref, !GetAtt,
!Sub, ...) arrive in their long form ({"Ref": ...}, {"Fn::GetAtt": ...}).
"""

import os
import re

from cfnlint.decode import decode


class Template:
    """A parsed template and the lookups both checks make on it."""

    def __init__(self, path):
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        tpl, matches = decode(path)
        if matches or tpl is None:
            raise SystemExit(f"{path}: cannot be read: {[str(m) for m in matches]}")
        self.tpl = tpl
        self.resources = dict(tpl.get("Resources") or {})
        self.parameters = dict(tpl.get("Parameters") or {})
        self.conditions = dict(tpl.get("Conditions") or {})
        self.function_globals = dict((tpl.get("Globals") or {}).get("Function") or {})

    def of_type(self, type_):
        return {k: v for k, v in self.resources.items() if v.get("Type") == type_}

    def properties(self, logical):
        return self.resources[logical].get("Properties") or {}

    def function_prop(self, fn, key):
        """A function property, falling back to Globals.Function as SAM does."""
        return self.properties(fn).get(key, self.function_globals.get(key))

    def function_env(self, fn):
        """The function's Environment.Variables over those of Globals.Function, unresolved."""
        env = self.properties(fn).get("Environment") or {}
        merged = dict((self.function_globals.get("Environment") or {}).get("Variables") or {})
        merged.update((env.get("Variables") or {}) if isinstance(env, dict) else {})
        return merged

    def function_binary(self, fn):
        """The cargo binary a function runs: Metadata.BuildProperties.Binary, else the CodeUri
        folder's name (what SAM's cargo-lambda builder does)."""
        meta = self.resources[fn].get("Metadata") or {}
        binary = (meta.get("BuildProperties") or {}).get("Binary")
        if binary:
            return binary
        code = self.function_prop(fn, "CodeUri")
        return os.path.basename(str(code).rstrip("/")) if isinstance(code, str) else None


def ref_target(value):
    """The logical id a !Ref X or !GetAtt X.Attr points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        if "Fn::GetAtt" in value:
            g = value["Fn::GetAtt"]
            if isinstance(g, list) and g:
                return g[0]
            if isinstance(g, str):
                return g.split(".")[0]
    return None


def sub_text(value):
    """The string of a literal or of a !Sub (either form); None for other intrinsics."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        s = value["Fn::Sub"]
        return s if isinstance(s, str) else (s[0] if s and isinstance(s[0], str) else None)
    return None


class Resolver:
    """Just enough CloudFormation to compute a function's environment: parameters (defaults plus
    overrides), pseudo parameters, Ref/GetAtt of resources given by `physical`, If, Equals,
    Not, And, Or, Condition, Join, Split, Select and Sub. Anything else is refused by name rather than guessed."""

    def __init__(self, template, params, physical, pseudo):
        self.template, self.physical = template, physical
        self.params = {k: str(v.get("Default", "")) for k, v in template.parameters.items()}
        self.params.update(params)
        self.params.update(pseudo)
        self.conditions = {k: self.value(v) for k, v in template.conditions.items()}

    def value(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                if a in self.params:
                    return self.params[a]
                return self.physical[a]["ref"]
            if k == "Fn::GetAtt":
                res, att = a if isinstance(a, list) else a.split(".", 1)
                return self.physical[res][att]
            if k == "Fn::If":
                return self.value(a[1] if self.conditions[a[0]] else a[2])
            if k == "Fn::Equals":
                return self.value(a[0]) == self.value(a[1])
            if k == "Fn::Not":
                return not self.value(a[0])
            if k == "Fn::And":
                return all(self.value(x) for x in a)
            if k == "Fn::Or":
                return any(self.value(x) for x in a)
            if k == "Condition":
                return self.value(self.template.conditions[a])
            if k == "Fn::Join":
                return str(a[0]).join(str(self.value(x)) for x in self.value(a[1]))
            if k == "Fn::Split":
                return str(self.value(a[1])).split(a[0])
            if k == "Fn::Select":
                return self.value(a[1])[int(self.value(a[0]))]
            if k == "Fn::Sub":
                text, extra = (a, {}) if isinstance(a, str) else (a[0], a[1])
                out = text
                for name, val in extra.items():
                    out = out.replace("${" + name + "}", str(self.value(val)))
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.value(
                    {"Fn::GetAtt": m.group(1).split(".", 1)} if "." in m.group(1) and not m.group(1).startswith("AWS::")
                    else {"Ref": m.group(1)})), out)
            raise SystemExit(f"{os.path.basename(self.template.path)}: {k} is not understood by this check")
        return v

    def env(self, fn):
        return {k: str(self.value(v)) for k, v in self.template.function_env(fn).items()}
