"""Convert an .onnx file into memwarden-lifetime's JSON graph format (shapes from value_info).

Used to make the fixtures in this folder from ../../../../../shared/data/onnx: python3 onnx_to_json.py IN.onnx OUT.json

A minimal protobuf wire-format reader: no onnx package needed."""
import json, sys, struct

def varint(b, i):
    r = 0; s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7f) << s; s += 7
        if not c & 0x80: return r, i

def fields(b):
    i = 0; out = []
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i:i+8]; i += 8
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i+n]; i += n
        elif wt == 5:
            v = b[i:i+4]; i += 4
        else:
            raise ValueError(wt)
        out.append((f, wt, v))
    return out

def get(fs, num): return [v for f, wt, v in fs if f == num]

ELEM = {1:4,2:1,3:1,4:2,5:2,6:4,7:8,9:1,10:2,11:8,12:4,13:8,16:2}

def value_info(b):
    fs = fields(b)
    name = get(fs, 1)[0].decode()
    shape = None; eb = 4
    for t in get(fs, 2):
        for tt in get(fields(t), 1):
            tf = fields(tt)
            et = get(tf, 1)
            if et: eb = ELEM.get(et[0], 4)
            sh = get(tf, 2)
            if sh:
                shape = []
                for d in get(fields(sh[0]), 1):
                    df = fields(d)
                    if get(df, 1): shape.append(get(df, 1)[0])
                    elif get(df, 2): shape.append(get(df, 2)[0].decode())
                    else: shape.append("?")
    return name, eb, shape

def graph(b):
    fs = fields(b)
    g = {"name": (get(fs, 2) or [b""])[0].decode()}
    inits = []
    for t in get(fs, 5):
        tf = fields(t)
        inits.append(get(tf, 8)[0].decode())
    infos = {}
    for num in (11, 12, 13):
        for v in get(fs, num):
            n, eb, sh = value_info(v)
            infos[n] = (eb, sh)
    nodes = []
    for k, nb in enumerate(get(fs, 1)):
        nf = fields(nb)
        node = {"name": (get(nf, 3) or [b""])[0].decode(), "op": get(nf, 4)[0].decode(),
                "inputs": [x.decode() for x in get(nf, 1)], "outputs": [x.decode() for x in get(nf, 2)]}
        if not node["name"]:
            node["name"] = f"{node['op']}_{k}"
        subs = []
        for a in get(nf, 5):
            af = fields(a)
            an = get(af, 1)[0].decode()
            for gb in get(af, 6):
                subs.append({"name": an, "graph": graph(gb)})
        if subs: node["subgraphs"] = subs
        nodes.append(node)
    g["nodes"] = nodes
    g["inputs"] = [value_info(v)[0] for v in get(fs, 11)]
    g["inputs"] = [n for n in g["inputs"] if n not in inits]
    g["outputs"] = [value_info(v)[0] for v in get(fs, 12)]
    g["constants"] = inits
    names = []
    seen = set()
    def add(n):
        if n and n not in seen:
            seen.add(n); names.append(n)
    for n in g["inputs"]: add(n)
    for n in inits: add(n)
    for nd in nodes:
        for x in nd["inputs"]: pass
        for x in nd["outputs"]: add(x)
    # Dropout rule: outputs without info take the input's shape (output 0 only).
    for nd in nodes:
        if nd["op"] == "Dropout" and nd["outputs"][0] not in infos and nd["inputs"][0] in infos:
            infos[nd["outputs"][0]] = infos[nd["inputs"][0]]
    tensors = []
    for n in names:
        eb, sh = infos.get(n, (4, None))
        if sh is not None and "?" in sh: sh = None
        tensors.append({"name": n, "shape": sh, "elem_bytes": eb})
    g["tensors"] = tensors
    # inputs of nodes not declared anywhere here (captured from outer scope) stay implicit
    for nd in nodes:
        nd["inputs"] = [x if x else None for x in nd["inputs"]]
    return g

def model(path):
    b = open(path, "rb").read()
    fs = fields(b)
    return graph(get(fs, 7)[0])

if __name__ == "__main__":
    g = model(sys.argv[1])
    json.dump(g, open(sys.argv[2], "w"))
