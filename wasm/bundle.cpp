#include "bundle.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "fp16.h"
#include "petal_limits.h"

namespace petal {
using nlohmann::json;

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
  }
  return "?";
}

static size_t dtype_size(DType d) { return d == DType::F16 ? 2 : 4; }

size_t Tensor::numel() const {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

static std::string shape_str(const std::vector<size_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

const Tensor& Bundle::get(const std::string& name, const std::vector<size_t>& shape) const {
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw Error("the model bundle has no tensor '" + name + "'; it is not a complete Petal model");
  if (!shape.empty() && it->second.shape != shape)
    throw Error("tensor '" + name + "' in the model bundle has shape " + shape_str(it->second.shape) +
                ", expected " + shape_str(shape) + "; the bundle does not match its own metadata");
  return it->second;
}

const std::string& Bundle::meta(const std::string& key) const {
  auto it = metadata.find(key);
  if (it == metadata.end())
    throw Error("the model bundle's metadata has no '" + key + "'; it is not a Petal model bundle");
  return it->second;
}

// The safetensors header: 8 bytes of length, then that many bytes of JSON. Sets `hlen`.
static json read_header(const uint8_t* bytes, size_t size, const std::string& what, uint64_t& hlen) {
  if (size == 0) throw Error(what + " is empty (0 bytes); expected a Petal model bundle (.safetensors)");
  if (size < 8)
    throw Error(what + " is only " + std::to_string(size) + " bytes: too short to be a model bundle");
  hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | bytes[i];
  if (size < 10 || hlen < 2 || bytes[8] != '{')
    throw Error(what + " is not a model bundle (no safetensors header); choose a .safetensors file made by Petal");
  if (hlen > limits::kMaxBundleHeaderBytes)
    throw Error(what + " has a " + std::to_string(hlen) + "-byte header; the limit is " +
                std::to_string(limits::kMaxBundleHeaderBytes >> 20) + " MB (" +
                std::to_string(limits::kMaxBundleHeaderBytes) + " bytes): it is not a Petal bundle, or it is corrupted");
  if (hlen > size - 8)
    throw Error(what + " is truncated: its header needs " + std::to_string(hlen + 8) + " bytes but the file has " +
                std::to_string(size) + "; download or copy it again");
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + hlen);
  } catch (const std::exception& e) {
    throw Error(what + " has a corrupted header (" + std::string(e.what()) + ")");
  }
  if (!header.is_object()) throw Error(what + " has a corrupted header (not a JSON object)");
  return header;
}

// Where a tensor's bytes lie in the file's data (after the header), checked against its shape.
struct TensorBytes {
  Tensor t;  // dtype and shape; no data yet
  uint64_t begin = 0, end = 0;
};

static TensorBytes tensor_entry(const std::string& name, const json& v, const std::string& what) {
  if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
    throw Error(what + ": tensor '" + name + "' has no dtype, shape or data_offsets");
  TensorBytes e;
  Tensor& t = e.t;
  const std::string dt = v["dtype"].is_string() ? v["dtype"].get<std::string>() : "";
  if (dt == "F32") t.stored = DType::F32;
  else if (dt == "F16") t.stored = DType::F16;
  else if (dt == "I32") t.stored = DType::I32;
  else throw Error(what + ": tensor '" + name + "' has unsupported dtype '" + dt + "' (Petal reads F32, F16, I32)");
  uint64_t numel = 1;
  for (auto& d : v["shape"]) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 32))
      throw Error(what + ": tensor '" + name + "' has an invalid shape");
    t.shape.push_back(d.get<size_t>());
    numel *= d.get<uint64_t>();
    if (numel > (1ull << 32)) throw Error(what + ": tensor '" + name + "' is impossibly large");
  }
  auto& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw Error(what + ": tensor '" + name + "' has invalid data_offsets");
  e.begin = off[0];
  e.end = off[1];
  if (e.end < e.begin || e.end - e.begin != numel * dtype_size(t.stored))
    throw Error(what + ": tensor '" + name + "' has " + std::to_string(e.end - e.begin) + " bytes for shape " +
                shape_str(t.shape) + " " + dt + "; the file is corrupted");
  return e;
}

// The tensor's values as floats, from its bytes `p` (little-endian, as stored).
static void decode_tensor(Tensor& t, const uint8_t* p) {
  const size_t numel = t.numel();
  t.data.resize(numel);
  if (t.stored == DType::F32) {
    std::memcpy(t.data.data(), p, numel * 4);
  } else if (t.stored == DType::F16) {
    halves_to_floats(p, numel, t.data.data());
  } else {
    for (size_t i = 0; i < numel; ++i) {
      int32_t x;
      std::memcpy(&x, p + 4 * i, 4);
      t.data[i] = float(x);
    }
  }
}

Bundle read_bundle(const uint8_t* bytes, size_t size, const std::string& what) {
  uint64_t hlen = 0;
  json header = read_header(bytes, size, what, hlen);
  const uint8_t* data = bytes + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  Bundle b;
  uint64_t max_end = 0;
  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(what + ": __metadata__ is not an object");
      for (auto& [k, s] : v.items()) {
        if (!s.is_string()) throw Error(what + ": metadata '" + k + "' is not a string");
        b.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    TensorBytes e = tensor_entry(name, v, what);
    if (e.end > data_size)
      throw Error(what + " is truncated: tensor '" + name + "' ends at byte " + std::to_string(e.end + 8 + hlen) +
                  " but the file has " + std::to_string(size) + "; download or copy it again");
    max_end = std::max(max_end, e.end);
    decode_tensor(e.t, data + e.begin);
    b.tensors.emplace(name, std::move(e.t));
  }
  if (max_end < data_size)
    throw Error(what + " has " + std::to_string(data_size - max_end) + " bytes after its last tensor; the file is corrupted");
  auto fv = b.metadata.find("format_version");
  if (b.metadata.count("format") && b.metadata["format"] == "petal-bundle" && fv != b.metadata.end() &&
      std::atoi(fv->second.c_str()) > kBundleFormatVersion)
    throw Error(what + " uses bundle format " + fv->second + ", newer than this Petal (" +
                std::to_string(kBundleFormatVersion) + "); update Petal");
  return b;
}

std::vector<uint8_t> write_bundle(const Bundle& b, DType weights) {
  json header = json::object();
  json meta = json::object();
  for (auto& [k, v] : b.metadata) meta[k] = v;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  std::vector<std::pair<const std::string*, DType>> order;
  for (auto& [name, t] : b.tensors) {
    if (t.data.size() != t.numel()) throw Error("internal: tensor '" + name + "' data does not match its shape");
    DType d = t.stored == DType::F32 ? weights : t.stored;
    const uint64_t n = t.numel() * dtype_size(d);
    header[name] = {{"dtype", dtype_name(d)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    order.emplace_back(&name, d);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';  // keep tensor data 8-byte aligned
  std::vector<uint8_t> out(8 + h.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  uint8_t* p = out.data() + 8 + h.size();
  for (auto& [name, d] : order) {
    const Tensor& t = b.tensors.at(*name);
    if (d == DType::F32) {
      std::memcpy(p, t.data.data(), t.data.size() * 4);
      p += t.data.size() * 4;
    } else if (d == DType::F16) {
      for (float f : t.data) {
        uint16_t hv = float_to_half(f);
        *p++ = uint8_t(hv);
        *p++ = uint8_t(hv >> 8);
      }
    } else {
      for (float f : t.data) {
        int32_t x = int32_t(f);
        std::memcpy(p, &x, 4);
        p += 4;
      }
    }
  }
  return out;
}

Bundle load_bundle_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open model bundle '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return read_bundle(bytes.data(), bytes.size(), "'" + path + "'");
}

void save_bundle_file(const Bundle& b, const std::string& path, DType weights) {
  auto bytes = write_bundle(b, weights);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error("cannot write '" + tmp + "': " + std::strerror(errno));
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      throw Error("writing '" + path + "' failed (disk full?): " + std::strerror(errno) + "; nothing was replaced");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot replace '" + path + "': " + std::strerror(errno));
  }
}

}  // namespace petal
