{
  "targets": [
    {
      "target_name": "node_dsm",
      "sources": [
        "native/addon.cc",
        "native/app_interrupt.cc",
        "native/dsm.cc",
        "native/fault_floor.cc",
        "native/data_channel.cc",
        "native/fault_handler.cc",
        "native/protections.cc",
        "native/region.cc",
        "native/request_ring.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
