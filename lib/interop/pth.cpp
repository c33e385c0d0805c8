#include "interop/pth.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <unordered_set>

namespace fs = std::filesystem;

namespace reslab {

namespace {

/// One value on the unpickler's stack. Containers are shared, as pickle's memo shares them.
struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Global {
  std::string module, name;
  std::string text() const { return safe_text(module + "." + name); }
};

struct Storage {
  torch::ScalarType dtype = torch::kFloat;
  std::string key;
  int64_t numel = 0;
};

struct Value {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kTuple, kList, kDict, kGlobal, kStorage, kTensor, kMark };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<ValuePtr> items;                         ///< tuple, list
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  ///< dict, in insertion order
  Global global;
  Storage storage;
  torch::Tensor tensor;
  int depth = 1;        ///< nesting: containers deeper than kMaxDepth are refused (their destruction recurses)
  bool inside = false;  ///< put inside a container: it may not change any more (so `depth` stays true)
};

constexpr int kMaxDepth = 64;
constexpr size_t kMaxStack = 1u << 22;
constexpr size_t kMaxMemo = 1u << 22;
/// Values and container entries a pickle may make (each costs a few hundred bytes): ResNet-152's state_dict
/// makes about 30,000.
constexpr uint64_t kMaxValues = uint64_t{1} << 21;
constexpr int64_t kMaxDims = 16;

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return "a bool";
    case Value::Kind::kInt:
      return "an int";
    case Value::Kind::kFloat:
      return "a float";
    case Value::Kind::kString:
      return "a string";
    case Value::Kind::kTuple:
      return "a tuple";
    case Value::Kind::kList:
      return "a list";
    case Value::Kind::kDict:
      return "a dict";
    case Value::Kind::kGlobal:
      return "a class or function";
    case Value::Kind::kStorage:
      return "a storage";
    case Value::Kind::kTensor:
      return "a tensor";
    case Value::Kind::kMark:
      return "a mark";
  }
  return "?";
}

std::optional<std::pair<torch::ScalarType, int64_t>> storage_dtype(const std::string& name) {
  static const std::map<std::string, std::pair<torch::ScalarType, int64_t>> types = {
      {"FloatStorage", {torch::kFloat, 4}}, {"DoubleStorage", {torch::kDouble, 8}},
      {"HalfStorage", {torch::kHalf, 2}},   {"BFloat16Storage", {torch::kBFloat16, 2}},
      {"LongStorage", {torch::kLong, 8}},   {"IntStorage", {torch::kInt, 4}},
      {"ShortStorage", {torch::kShort, 2}}, {"CharStorage", {torch::kChar, 1}},
      {"ByteStorage", {torch::kByte, 1}},   {"BoolStorage", {torch::kBool, 1}}};
  const auto it = types.find(name);
  if (it == types.end()) return std::nullopt;
  return it->second;
}

/// The classes and functions a state_dict's pickle names; anything else is refused.
bool allowed(const Global& g) {
  if (g.module == "collections" && g.name == "OrderedDict") return true;
  if (g.module == "torch._utils" &&
      (g.name == "_rebuild_tensor_v2" || g.name == "_rebuild_parameter" || g.name == "_rebuild_parameter_with_state")) {
    return true;
  }
  if (g.module == "torch.jit._pickle" && g.name == "restore_type_tag") return true;
  if (g.module == "torch" && storage_dtype(g.name)) return true;
  return false;
}

class Unpickler {
 public:
  Unpickler(const ZipArchive& zip, std::string_view data) : zip_(zip), data_(data) {}

  ValuePtr run() {
    while (true) {
      const auto op = static_cast<uint8_t>(byte());
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          take(8);
          break;     // FRAME
        case '.': {  // STOP
          if (stack_.size() != 1) fail("the pickle ends with " + std::to_string(stack_.size()) + " values, not one");
          return stack_.back();
        }
        case 'N':
          push(make(Value::Kind::kNone));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Value::Kind::kBool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'K':
          push_int(static_cast<uint8_t>(byte()));
          break;  // BININT1
        case 'M':
          push_int(static_cast<int64_t>(le(take(2))));
          break;  // BININT2
        case 'J':
          push_int(static_cast<int32_t>(le(take(4))));
          break;      // BININT
        case 0x8a: {  // LONG1
          const auto n = static_cast<uint8_t>(byte());
          if (n > 8) fail("an integer of " + std::to_string(n) + " bytes (more than 64 bits)");
          const std::string_view d = take(n);
          uint64_t v = n > 0 ? le(d) : 0;
          if (n > 0 && n < 8 && (static_cast<uint8_t>(d[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const std::string_view d = take(8);
          uint64_t bits = 0;
          for (char c : d) bits = (bits << 8) | static_cast<uint8_t>(c);
          auto v = make(Value::Kind::kFloat);
          std::memcpy(&v->f, &bits, sizeof bits);
          push(v);
          break;
        }
        case 'X':
          push_string(take(checked_len(le(take(4)))));
          break;  // BINUNICODE
        case 0x8c:
          push_string(take(static_cast<uint8_t>(byte())));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push_string(take(checked_len(le(take(8)))));
          break;  // BINUNICODE8
        case 'B':
          push_string(take(checked_len(le(take(4)))));
          break;  // BINBYTES
        case 'C':
          push_string(take(static_cast<uint8_t>(byte())));
          break;     // SHORT_BINBYTES
        case 'c': {  // GLOBAL module\nname\n
          Global g;
          g.module = line();
          g.name = line();
          push_global(g);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const auto name = pop(), module = pop();
          if (name->kind != Value::Kind::kString || module->kind != Value::Kind::kString)
            fail("a malformed STACK_GLOBAL");
          push_global(Global{module->s, name->s});
          break;
        }
        case 'q':
          memo_put(static_cast<uint8_t>(byte()));
          break;  // BINPUT
        case 'r':
          memo_put(le(take(4)));
          break;  // LONG_BINPUT
        case 0x94:
          memo_put(memo_.size());
          break;  // MEMOIZE
        case 'h':
          push(memo_get(static_cast<uint8_t>(byte())));
          break;  // BINGET
        case 'j':
          push(memo_get(le(take(4))));
          break;  // LONG_BINGET
        case '(':
          push(make(Value::Kind::kMark));
          break;
        case '0':
          pop();
          break;  // POP
        case '2':
          push(top());
          break;  // DUP
        case '1':
          pop_mark();
          break;  // POP_MARK
        case ')':
          push(container(Value::Kind::kTuple, {}));
          break;
        case 't':
          push(container(Value::Kind::kTuple, pop_mark()));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
          std::vector<ValuePtr> items(op - 0x84);
          for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
          push(container(Value::Kind::kTuple, std::move(items)));
          break;
        }
        case ']':
          push(container(Value::Kind::kList, {}));
          break;
        case '}':
          push(container(Value::Kind::kDict, {}));
          break;
        case 'a': {  // APPEND
          auto v = pop();
          add_items(top(), {v});
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark();
          add_items(top(), std::move(items));
          break;
        }
        case 's': {  // SETITEM
          auto v = pop(), k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          set_items(top(), std::move(items));
          break;
        }
        case 'b': {  // BUILD: an OrderedDict's _metadata; nothing a tensor needs
          pop();
          if (top()->kind != Value::Kind::kDict && top()->kind != Value::Kind::kTensor) {
            fail("BUILD on " + std::string(kind_name(top()->kind)) + " (expected a state_dict's OrderedDict)");
          }
          break;
        }
        case 'R':
        case 0x81: {  // REDUCE, NEWOBJ
          auto args = pop(), callable = pop();
          push(call(callable, args));
          break;
        }
        case 'Q':
          push(persistent(pop()));
          break;  // BINPERSID
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("pickle opcode ") + hex + " at byte " + std::to_string(pos_ - 1) +
               ", which a state_dict does not use");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw PthError(zip_.source() + ": data.pkl: " + what + "; expected a state_dict (tensors by name)");
  }

  char byte() {
    if (pos_ >= data_.size()) fail("truncated pickle (no STOP)");
    return data_[pos_++];
  }
  std::string_view take(uint64_t n) {
    if (n > data_.size() - pos_) fail("truncated pickle (a value runs past its end)");
    const auto out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  static uint64_t le(std::string_view d) {
    uint64_t v = 0;
    for (size_t i = 0; i < d.size(); ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(d[i])) << (8 * i);
    return v;
  }
  uint64_t checked_len(uint64_t n) const {
    if (n > data_.size() - pos_) fail("truncated pickle (a string runs past its end)");
    return n;
  }
  std::string line() {
    const auto end = data_.find('\n', pos_);
    if (end == std::string_view::npos || end - pos_ > 256) fail("a malformed GLOBAL");
    std::string out(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }

  ValuePtr make(Value::Kind kind) {
    count();
    auto v = std::make_shared<Value>();
    v->kind = kind;
    return v;
  }
  void count(uint64_t n = 1) {
    values_ += n;
    if (values_ > kMaxValues) fail("more than " + std::to_string(kMaxValues) + " values (a state_dict has far fewer)");
  }
  ValuePtr container(Value::Kind kind, std::vector<ValuePtr> items) {
    auto v = make(kind);
    count(items.size());
    for (const auto& item : items) deepen(v, item);
    v->items = std::move(items);
    return v;
  }
  void deepen(const ValuePtr& parent, const ValuePtr& child) {
    if (parent.get() == child.get()) fail("a container inside itself");
    child->inside = true;
    parent->depth = std::max(parent->depth, child->depth + 1);
    if (parent->depth > kMaxDepth) fail("values nested more than " + std::to_string(kMaxDepth) + " deep");
  }
  /// pickle writes a container whole before it puts it inside another; one changed afterwards could nest
  /// deeper than its recorded depth says (and be freed by a recursion of any depth).
  void check_open(const ValuePtr& container, const char* op) const {
    if (container->inside) fail(std::string(op) + " on a container already inside another");
  }
  void push(ValuePtr v) {
    if (stack_.size() >= kMaxStack) fail("more than " + std::to_string(kMaxStack) + " values on the stack");
    stack_.push_back(std::move(v));
  }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::kInt);
    v->i = i;
    push(v);
  }
  void push_string(std::string_view s) {
    auto v = make(Value::Kind::kString);
    v->s = std::string(s);
    push(v);
  }
  void push_global(const Global& g) {
    if (!allowed(g)) {
      const bool module_class = g.module.rfind("torch.nn", 0) == 0 || g.module.rfind("torchvision", 0) == 0;
      fail("names " + g.text() + ", which reslab does not construct" +
           (module_class ? " (the file holds a pickled module: save model.state_dict() instead)" : ""));
    }
    auto v = make(Value::Kind::kGlobal);
    v->global = g;
    push(v);
  }
  ValuePtr pop() {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::kMark) fail("a malformed pickle (stack underflow)");
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() const {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::kMark) fail("a malformed pickle (stack underflow)");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->kind != Value::Kind::kMark) --m;
    if (m == 0) fail("a malformed pickle (no MARK)");
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m - 1);
    return items;
  }
  void memo_put(uint64_t index) {
    if (index >= kMaxMemo) fail("memo index " + std::to_string(index) + " out of range");
    if (index >= memo_.size()) memo_.resize(index + 1);
    memo_[index] = top();
  }
  ValuePtr memo_get(uint64_t index) const {
    if (index >= memo_.size() || !memo_[index]) fail("memo index " + std::to_string(index) + " was never stored");
    return memo_[index];
  }
  void add_items(const ValuePtr& list, std::vector<ValuePtr> items) {
    if (list->kind != Value::Kind::kList) fail("APPEND to " + std::string(kind_name(list->kind)));
    check_open(list, "APPEND");
    count(items.size());
    for (auto& item : items) {
      deepen(list, item);
      list->items.push_back(std::move(item));
    }
  }
  void set_items(const ValuePtr& dict, std::vector<ValuePtr> items) {
    if (dict->kind != Value::Kind::kDict) fail("SETITEM on " + std::string(kind_name(dict->kind)));
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    check_open(dict, "SETITEM");
    count(items.size());
    for (size_t k = 0; k < items.size(); k += 2) {
      deepen(dict, items[k]);
      deepen(dict, items[k + 1]);
      dict->entries.emplace_back(std::move(items[k]), std::move(items[k + 1]));
    }
  }
  const std::vector<ValuePtr>& tuple(const ValuePtr& v, size_t min, size_t max, const std::string& what) const {
    if (v->kind != Value::Kind::kTuple || v->items.size() < min || v->items.size() > max) {
      fail(what + ": expected a tuple of " + std::to_string(min) + (max > min ? " to " + std::to_string(max) : "") +
           " values, got " + kind_name(v->kind) +
           (v->kind == Value::Kind::kTuple ? " of " + std::to_string(v->items.size()) : ""));
    }
    return v->items;
  }
  std::vector<int64_t> ints(const ValuePtr& v, const std::string& what) const {
    const auto& items = tuple(v, 0, kMaxDims, what);
    std::vector<int64_t> out;
    for (const auto& item : items) {
      if (item->kind != Value::Kind::kInt || item->i < 0) fail(what + ": expected non-negative integers");
      out.push_back(item->i);
    }
    return out;
  }

  ValuePtr persistent(const ValuePtr& pid) {
    // ('storage', torch.FloatStorage, key, location, numel)
    const auto& t = tuple(pid, 5, 5, "a persistent id");
    if (t[0]->kind != Value::Kind::kString || t[0]->s != "storage" || t[1]->kind != Value::Kind::kGlobal ||
        t[2]->kind != Value::Kind::kString || t[4]->kind != Value::Kind::kInt || t[4]->i < 0) {
      fail("a persistent id that is not ('storage', type, key, location, numel)");
    }
    const auto type = storage_dtype(t[1]->global.name);
    if (!type) fail("a storage of type " + t[1]->global.text());
    const std::string key = safe_text(t[2]->s);
    auto v = make(Value::Kind::kStorage);
    v->storage = Storage{type->first, t[2]->s, t[4]->i};
    const auto known = storages_.find(t[2]->s);
    if (known != storages_.end()) {
      if (known->second.scalar_type() != type->first || known->second.numel() != t[4]->i) {
        fail("storage '" + key + "' named twice with different types or sizes");
      }
      return v;
    }
    // Each record is read (and its checksum verified) once, however often the pickle names it.
    const auto bytes = zip_.record("data/" + t[2]->s);
    if (static_cast<uint64_t>(t[4]->i) > bytes.size() / static_cast<uint64_t>(type->second) ||
        bytes.size() != static_cast<uint64_t>(t[4]->i) * static_cast<uint64_t>(type->second)) {
      fail("record 'data/" + key + "' holds " + std::to_string(bytes.size()) + " bytes, not " +
           std::to_string(t[4]->i) + " values of " + std::to_string(type->second));
    }
    // A bool is one byte that must be 0 or 1: read the bytes, and any other value is true.
    const bool boolean = type->first == torch::kBool;
    auto flat = torch::empty({t[4]->i}, torch::TensorOptions().dtype(boolean ? torch::kByte : type->first));
    if (!bytes.empty()) std::memcpy(flat.data_ptr(), bytes.data(), bytes.size());
    if (boolean) flat = flat.ne(0);
    storages_.emplace(t[2]->s, flat);
    return v;
  }

  torch::Tensor rebuild(const std::vector<ValuePtr>& a) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a[0]->kind != Value::Kind::kStorage) fail("_rebuild_tensor_v2 of " + std::string(kind_name(a[0]->kind)));
    if (a[1]->kind != Value::Kind::kInt || a[1]->i < 0) fail("_rebuild_tensor_v2: a bad storage offset");
    const Storage& s = a[0]->storage;
    const auto size = ints(a[2], "a tensor's size"), stride = ints(a[3], "a tensor's stride");
    if (size.size() != stride.size()) fail("a tensor whose size and stride have different lengths");
    // The last element a view reads must lie inside its storage.
    unsigned __int128 last = static_cast<uint64_t>(a[1]->i);  // 16 dims of 2^40 x 2^40 overflow 64 bits
    bool empty = false;
    for (size_t d = 0; d < size.size(); ++d) {
      if (size[d] == 0) empty = true;
      if (size[d] > (int64_t{1} << 40) || stride[d] > (int64_t{1} << 40)) fail("a tensor dimension past 2^40");
      if (size[d] > 0) last += static_cast<unsigned __int128>(size[d] - 1) * static_cast<uint64_t>(stride[d]);
    }
    if (!empty && last >= static_cast<unsigned __int128>(s.numel)) {
      fail("a tensor that reads past its storage '" + safe_text(s.key) + "' (" + std::to_string(s.numel) + " values)");
    }
    if (empty) return torch::empty(size, torch::TensorOptions().dtype(s.dtype));
    // What the tensors copy out of their storages is bounded by the file: a view of stride 0 or many views of
    // one storage cannot ask for more memory than twice the archive and 64 MiB.
    uint64_t values = 1;
    for (int64_t d : size) {
      if (values > (uint64_t{1} << 50) / static_cast<uint64_t>(d)) fail("a tensor of more than 2^50 values");
      values *= static_cast<uint64_t>(d);
    }
    rebuilt_bytes_ += values * static_cast<uint64_t>(c10::elementSize(s.dtype));
    if (rebuilt_bytes_ > 2 * zip_.size() + (uint64_t{64} << 20)) {
      fail("tensors of more bytes than twice the file (views repeating their storage)");
    }
    return storages_.at(s.key).as_strided(size, stride, a[1]->i).clone(at::MemoryFormat::Contiguous);
  }

  ValuePtr call(const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Value::Kind::kGlobal) fail("a call of " + std::string(kind_name(callable->kind)));
    const Global& g = callable->global;
    if (g.name == "OrderedDict") {
      tuple(args, 0, 0, "OrderedDict()");
      return container(Value::Kind::kDict, {});
    }
    if (g.name == "restore_type_tag") return tuple(args, 2, 2, "restore_type_tag")[0];
    if (g.name == "_rebuild_tensor_v2") {
      auto v = make(Value::Kind::kTensor);
      v->tensor = rebuild(tuple(args, 6, 7, "_rebuild_tensor_v2"));
      return v;
    }
    if (g.name == "_rebuild_parameter" || g.name == "_rebuild_parameter_with_state") {
      const auto& a = tuple(args, 3, 4, g.name);
      if (a[0]->kind != Value::Kind::kTensor) fail("_rebuild_parameter of " + std::string(kind_name(a[0]->kind)));
      return a[0];
    }
    fail("a call of " + g.text());
  }

  const ZipArchive& zip_;
  std::string_view data_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<ValuePtr> memo_;
  std::map<std::string, torch::Tensor> storages_;
  uint64_t rebuilt_bytes_ = 0;
  uint64_t values_ = 0;
};

}  // namespace

StateDict parse_state_dict(std::vector<char> bytes, const std::string& source) {
  const ZipArchive zip(std::move(bytes), source);
  if (zip.has("byteorder")) {
    const auto order = zip.record("byteorder");
    if (order != "little")
      throw PthError(source + ": written on a big-endian machine (byteorder '" +
                     safe_text(std::string(order.substr(0, 16))) + "'); reslab reads little-endian files");
  }
  Unpickler unpickler(zip, zip.record("data.pkl"));
  const ValuePtr root = unpickler.run();
  if (root->kind != Value::Kind::kDict) {
    throw PthError(source + ": holds " + kind_name(root->kind) +
                   ", not a dict; expected a state_dict (tensors by name)");
  }
  StateDict out;
  std::string keys;
  bool all_tensors = true;
  for (const auto& [k, v] : root->entries) {
    if (k->kind != Value::Kind::kString) {
      throw PthError(source + ": a key that is " + kind_name(k->kind) + ", not a string; expected a state_dict");
    }
    if (keys.size() < 200) keys += (keys.empty() ? "" : ", ") + safe_text(k->s);
    if (v->kind != Value::Kind::kTensor) {
      all_tensors = false;
      continue;
    }
    out.emplace_back(k->s, v->tensor);
  }
  if (!all_tensors) {
    throw PthError(
        source + ": a dict whose values are not all tensors (keys: " + keys +
        "): a training checkpoint? Save its model's state_dict alone, e.g. torch.save(ckpt['state_dict'], f)");
  }
  std::unordered_set<std::string> seen;
  for (const auto& [name, t] : out) {
    if (!seen.insert(name).second) throw PthError(source + ": key '" + safe_text(name) + "' appears twice");
  }
  return out;
}

StateDict read_state_dict(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw PthError(path + ": no such file");
  const auto size = fs::file_size(path, ec);
  if (ec) throw PthError(path + ": cannot read: " + ec.message());
  if (size > kMaxPthBytes) {
    throw PthError(path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(kMaxPthBytes >> 30) +
                   " GiB reslab reads as a state_dict");
  }
  std::vector<char> bytes(size);
  std::ifstream in(path, std::ios::binary);
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size)
    throw PthError(path + ": cannot read all " + std::to_string(size) + " bytes");
  return parse_state_dict(std::move(bytes), path);
}

namespace {

/// The pickle torch.save writes for an OrderedDict of tensors (protocol 2), built by hand: LibTorch's
/// pickle_save wraps a dict in torch.jit._pickle.restore_type_tag, which torch.load's weights_only mode (the
/// default from PyTorch 2.6) refuses. Only what that mode allows is named: collections.OrderedDict,
/// torch._utils._rebuild_tensor_v2 and the storage types.
class StateDictPickler {
 public:
  void put_string(const std::string& s) {
    out_ += 'X';
    put_le(s.size(), 4);
    out_ += s;
  }
  void put_int(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out_ += 'M';
      put_le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      put_le(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      out_ += '\x8a';
      out_ += static_cast<char>(8);
      put_le(static_cast<uint64_t>(v), 8);
    }
  }
  void put_ints(at::IntArrayRef v) {
    out_ += '(';
    for (int64_t x : v) put_int(x);
    out_ += 't';
  }
  void put_global(const char* module, const std::string& name) {
    out_ += 'c';
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }
  std::string& bytes() { return out_; }

 private:
  void put_le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  std::string out_;
};

std::string storage_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return "FloatStorage";
    case torch::kDouble:
      return "DoubleStorage";
    case torch::kHalf:
      return "HalfStorage";
    case torch::kBFloat16:
      return "BFloat16Storage";
    case torch::kLong:
      return "LongStorage";
    case torch::kInt:
      return "IntStorage";
    case torch::kShort:
      return "ShortStorage";
    case torch::kChar:
      return "CharStorage";
    case torch::kByte:
      return "ByteStorage";
    case torch::kBool:
      return "BoolStorage";
    default:
      break;
  }
  throw std::invalid_argument(std::string("write_state_dict: no PyTorch storage type for ") + c10::toString(t));
}

}  // namespace

void write_state_dict(const std::string& path, const StateDict& tensors) {
  StateDictPickler p;
  std::vector<torch::Tensor> data;
  p.bytes() += "\x80\x02";
  p.put_global("collections", "OrderedDict");
  p.bytes() += ")R(";
  for (const auto& [name, given] : tensors) {
    const torch::Tensor t = given.detach().to(torch::kCPU).contiguous();
    const std::string key = std::to_string(data.size());
    p.put_string(name);
    p.put_global("torch._utils", "_rebuild_tensor_v2");
    p.bytes() += "((";  // the arguments, then the persistent id ('storage', type, key, location, numel)
    p.put_string("storage");
    p.put_global("torch", storage_name(t.scalar_type()));
    p.put_string(key);
    p.put_string("cpu");
    p.put_int(t.numel());
    p.bytes() += "tQ";
    p.put_int(0);
    p.put_ints(t.sizes());
    p.put_ints(t.strides());
    p.bytes() += "\x89";  // requires_grad False
    p.put_global("collections", "OrderedDict");
    p.bytes() += ")RtR";  // backward hooks: an empty OrderedDict; the tuple; _rebuild_tensor_v2(...)
    data.push_back(t);
  }
  p.bytes() += "u.";

  std::vector<char> file;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* bytes, size_t n) {
      const auto* c = static_cast<const char*>(bytes);
      file.insert(file.end(), c, c + n);
      return n;
    });
    writer.writeRecord("data.pkl", p.bytes().data(), p.bytes().size());
    writer.writeRecord("byteorder", "little", 6);
    for (size_t i = 0; i < data.size(); ++i) {
      writer.writeRecord("data/" + std::to_string(i), data[i].data_ptr(), data[i].nbytes());
    }
    writer.writeEndOfFile();
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp);
      throw std::runtime_error(tmp + ": cannot write: " + std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    fs::remove(tmp);
    throw std::runtime_error(path + ": cannot replace: " + why);
  }
}

}  // namespace reslab
