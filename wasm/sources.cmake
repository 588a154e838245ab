# The engine's sources: the one list that wasm/CMakeLists.txt (native and Emscripten builds) and
# fuzz/CMakeLists.txt (libFuzzer build) compile, so that the fuzzed engine is the shipped one.
# Paths are relative to this folder; PETAL_ENGINE_DIR is it.
set(PETAL_ENGINE_DIR ${CMAKE_CURRENT_LIST_DIR})
set(PETAL_ENGINE_SOURCES
  bundle.cpp head_bundle.cpp graph.cpp keras_import.cpp image.cpp backbone.cpp head.cpp heatmap.cpp teach.cpp matmul.cpp engine.cpp
  onnx_export.cpp
  threadpool.cpp)  # replaces libpthreadpool.a's functions at link time: see threadpool.cpp
# Keras HDF5 weights: native builds only (libhdf5).
set(PETAL_ENGINE_NATIVE_SOURCES keras_h5.cpp)
