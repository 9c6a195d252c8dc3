# Prints `LogicalId:binary` for every AWS::Serverless::Function of a SAM template, the binary being
# its Metadata.BuildProperties.Binary (the root Makefile's one list of functions). Plain awk: make
# runs under `sam build`, where the project's Python environment may not be on PATH, and no YAML
# library would take the template's CloudFormation tags (!Ref, !GetAtt). It relies on the layout
# template.yaml keeps (two-space indents, resources as direct children of Resources:, Type and
# Binary on lines of their own); scripts/check-template reads the template properly.
/^[^ #]/ { in_resources = ($0 ~ /^Resources:[ \t]*$/) }
in_resources && /^  [A-Za-z0-9]+:[ \t]*$/ { id = $1; sub(/:$/, "", id); order[++n] = id }
in_resources && /^    Type:[ \t]*AWS::Serverless::Function[ \t]*$/ { fn[id] = 1 }
in_resources && /^ +Binary:[ \t]*[A-Za-z0-9_-]+[ \t]*$/ { bin[id] = $2 }
END {
  for (i = 1; i <= n; i++) {
    id = order[i]
    if (!(id in fn)) continue
    if (!(id in bin)) { print "template.yaml: " id " has no Metadata.BuildProperties.Binary" > "/dev/stderr"; exit 1 }
    print id ":" bin[id]
  }
}
