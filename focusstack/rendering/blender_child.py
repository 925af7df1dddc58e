"""The Blender side of ``--engine blender``: a standalone script run by a Python that has ``bpy``.

``python blender_child.py JOBDIR`` reads ``JOBDIR/job.json`` and the textures it names
(``.npy``, H x W x 4 float32 straight-alpha *linear* RGBA, rows bottom-up as Blender stores
images), builds the scene with ``bpy``, renders every entry of ``renders`` with Cycles on the
CPU and writes ``JOBDIR/<name>.npy`` (R x R x 3 float32 scene-linear RGB, row 0 at the top) and
``JOBDIR/timings.json``.

This file imports only the standard library, numpy and bpy, never ``focusstack``: it runs in
whatever interpreter has bpy (bpy 5.0 needs numpy < 2, which may be another environment than
focusstack's; see docs/render-dataset.md). The job format is written by
``focusstack.rendering.blender`` and is private to the two files.

Scene conventions (Blender world = camera space, camera at the origin looking down -Z, +Y up):
every plane is a mesh quad of half-size (hw, hh) in its local XY plane, UV (0, 0) at the
bottom-left, placed by the 4 x 4 ``matrix_world`` from the job. Shading is a Diffuse BSDF of the
texture colour, mixed with a Transparent BSDF by the texture alpha. Planes are invisible to
diffuse, glossy, transmission and shadow rays, so they are lit only by the world and the sun and
neither shadow nor light one another: no shadows, no inter-reflections.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

JOB_FORMAT = "focusstack-blender-job/1"


def _check_version(bpy) -> None:
    if bpy.app.version < (5, 0, 0):
        raise SystemExit(f"bpy {bpy.app.version_string} is too old: focusstack needs bpy 5.0")


def _setup_scene(bpy, job: dict):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    res = int(job["resolution"])
    cyc = job["cycles"]
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = r.resolution_y = res
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = False
    r.use_persistent_data = True  # keep the scene (BVH, images) between the renders of a job
    r.threads_mode = "FIXED"
    r.threads = int(cyc["threads"])
    c = scene.cycles
    c.device = "CPU"
    c.samples = int(cyc["samples"])
    c.use_adaptive_sampling = False  # a fixed sample count: same work, same bytes
    c.seed = int(cyc["seed"])
    c.use_animated_seed = False
    c.use_denoising = bool(cyc["denoise"])
    if cyc["denoise"]:
        c.denoiser = "OPENIMAGEDENOISE"
    c.max_bounces = 1  # camera hit + one diffuse bounce into the world (the world light)
    c.diffuse_bounces = 1
    c.glossy_bounces = 0
    c.transmission_bounces = 0
    c.volume_bounces = 0
    c.transparent_max_bounces = 2 * len(job["planes"]) + 8  # alpha-cut planes are see-through
    c.caustics_reflective = False
    c.caustics_refractive = False
    c.sample_clamp_direct = 0.0
    c.sample_clamp_indirect = 0.0
    c.pixel_filter_type = "BOX"  # a pixel is the mean over its own square: no extra softening
    c.filter_width = 1.0
    # colour: scene-linear values are read back from float EXR; the view transform is kept at
    # 'Standard' (no Filmic/AgX tone curve) so that anything displayed or saved as 8/16-bit is
    # plain sRGB too.
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    s = r.image_settings
    s.file_format = "OPEN_EXR"
    s.color_mode = "RGB"
    s.color_depth = "32"
    s.exr_codec = "NONE"
    return scene


def _texture_image(bpy, name: str, path: Path):
    tex = np.load(path)  # H x W x 4 float32, straight alpha, linear, rows bottom-up
    h, w = tex.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
    img.colorspace_settings.name = "Linear Rec.709"
    img.alpha_mode = "STRAIGHT"
    img.pixels.foreach_set(np.ascontiguousarray(tex, dtype=np.float32).ravel())
    img.pack()
    return img


def _material(bpy, name: str, img, opaque: bool):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.use_backface_culling = True
    nt = mat.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = img
    tex.interpolation = "Linear"
    tex.extension = "EXTEND" if opaque else "CLIP"
    diffuse = nt.nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Roughness"].default_value = 0.0  # Lambertian
    nt.links.new(tex.outputs["Color"], diffuse.inputs["Color"])
    if opaque:
        nt.links.new(diffuse.outputs["BSDF"], out.inputs["Surface"])
    else:
        mix = nt.nodes.new("ShaderNodeMixShader")
        clear = nt.nodes.new("ShaderNodeBsdfTransparent")
        nt.links.new(tex.outputs["Alpha"], mix.inputs["Fac"])
        nt.links.new(clear.outputs["BSDF"], mix.inputs[1])
        nt.links.new(diffuse.outputs["BSDF"], mix.inputs[2])
        nt.links.new(mix.outputs["Shader"], out.inputs["Surface"])
    return mat


def _plane(bpy, scene, jobdir: Path, entry: dict):
    import mathutils

    hw, hh = (float(v) for v in entry["half_size_m"])
    mesh = bpy.data.meshes.new(entry["name"])
    verts = [(-hw, -hh, 0.0), (hw, -hh, 0.0), (hw, hh, 0.0), (-hw, hh, 0.0)]
    mesh.from_pydata(verts, [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, (u, v) in zip(mesh.loops, ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))):
        uv.data[loop.index].uv = (u, v)
    mesh.update()
    img = _texture_image(bpy, entry["name"], jobdir / entry["texture"])
    mesh.materials.append(_material(bpy, entry["name"], img, bool(entry["opaque"])))
    obj = bpy.data.objects.new(entry["name"], mesh)
    obj.matrix_world = mathutils.Matrix(entry["matrix_world"])
    obj.pass_index = int(entry["pass_index"])
    # seen by the camera only: no shadows, no inter-reflections, lit by world + sun alone
    obj.visible_camera = True
    obj.visible_diffuse = False
    obj.visible_glossy = False
    obj.visible_transmission = False
    obj.visible_volume_scatter = False
    obj.visible_shadow = False
    scene.collection.objects.link(obj)
    return obj


def _world(bpy, scene, world_job: dict):
    """Background radiance ``L(w) = mean + gradient * dot(w, direction)`` (a smooth sky)."""
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    scene.world = world
    # BSDF sampling only: for a smooth, linear-in-direction sky the cosine-weighted diffuse
    # bounce has (almost) no variance, while light-sampling it would add noise.
    world.cycles.sampling_method = "NONE"
    nt = world.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    out = nt.nodes.new("ShaderNodeOutputWorld")
    bg = nt.nodes.new("ShaderNodeBackground")
    coord = nt.nodes.new("ShaderNodeTexCoord")
    dot = nt.nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    dot.inputs[1].default_value = [float(v) for v in world_job["direction"]]
    nt.links.new(coord.outputs["Generated"], dot.inputs[0])
    fma = nt.nodes.new("ShaderNodeVectorMath")
    fma.operation = "MULTIPLY_ADD"
    nt.links.new(dot.outputs["Value"], fma.inputs[0])
    fma.inputs[1].default_value = [float(v) for v in world_job["gradient"]]
    fma.inputs[2].default_value = [float(v) for v in world_job["mean"]]
    nt.links.new(fma.outputs["Vector"], bg.inputs["Color"])
    bg.inputs["Strength"].default_value = 1.0
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])


def _sun(bpy, scene, sun_job: dict) -> None:
    import mathutils

    light = bpy.data.lights.new("sun", type="SUN")
    rgb = np.asarray(sun_job["irradiance_rgb"], dtype=np.float64)  # W/m^2 per channel
    energy = float(rgb.max())
    light.energy = energy
    light.color = [float(v / energy) for v in rgb]
    light.angle = 0.0  # a point-like sun: its direct light is exact in one sample
    light.use_shadow = False
    obj = bpy.data.objects.new("sun", light)
    to_sun = mathutils.Vector([float(v) for v in sun_job["direction"]]).normalized()
    obj.matrix_world = to_sun.to_track_quat("Z", "Y").to_matrix().to_4x4()  # local +Z -> sun
    scene.collection.objects.link(obj)


def _camera(bpy, scene, cam_job: dict):
    cam = bpy.data.cameras.new("camera")
    cam.type = "PERSP"
    cam.lens_unit = "MILLIMETERS"
    cam.lens = float(cam_job["focal_mm"])
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = float(cam_job["sensor_width_mm"])
    cam.sensor_height = float(cam_job["sensor_width_mm"])
    cam.shift_x = cam.shift_y = 0.0
    cam.clip_start = 0.01
    cam.clip_end = 1000.0
    cam.dof.aperture_blades = 0  # a round aperture, like the thin-lens disc
    cam.dof.aperture_ratio = 1.0
    obj = bpy.data.objects.new("camera", cam)
    scene.collection.objects.link(obj)
    scene.camera = obj
    return cam


def _read_exr(bpy, path: Path, res: int) -> np.ndarray:
    img = bpy.data.images.load(str(path), check_existing=False)
    img.colorspace_settings.name = "Linear Rec.709"  # the raw scene-linear values
    w, h = img.size
    if (w, h) != (res, res):
        raise SystemExit(f"{path} is {w} x {h}, expected {res} x {res}")
    buf = np.empty(w * h * img.channels, dtype=np.float32)
    img.pixels.foreach_get(buf)
    bpy.data.images.remove(img)
    return np.ascontiguousarray(buf.reshape(h, w, -1)[::-1, :, :3])


def main(jobdir: str) -> None:
    import bpy  # optional extra: bpy (this module runs inside the Blender Python)

    _check_version(bpy)
    jobdir_p = Path(jobdir)
    job = json.loads((jobdir_p / "job.json").read_text())
    if job.get("format") != JOB_FORMAT:
        raise SystemExit(f"unknown job format {job.get('format')!r}")
    started = time.perf_counter()
    scene = _setup_scene(bpy, job)
    for entry in job["planes"]:
        _plane(bpy, scene, jobdir_p, entry)
    _world(bpy, scene, job["world"])
    if job.get("sun"):
        _sun(bpy, scene, job["sun"])
    cam = _camera(bpy, scene, job["camera"])
    setup_s = time.perf_counter() - started
    timings = []
    res = int(job["resolution"])
    for item in job["renders"]:
        t0 = time.perf_counter()
        cam.dof.use_dof = bool(item["dof"])
        if item["dof"]:
            cam.dof.focus_distance = float(item["focus_m"])
            cam.dof.aperture_fstop = float(item["fstop"])
        exr = jobdir_p / f"{item['name']}.exr"
        scene.render.filepath = str(exr)
        bpy.ops.render.render(write_still=True)
        np.save(jobdir_p / f"{item['name']}.npy", _read_exr(bpy, exr, res))
        exr.unlink()
        timings.append({"name": item["name"], "seconds": time.perf_counter() - t0})
    (jobdir_p / "timings.json").write_text(json.dumps({
        "bpy": bpy.app.version_string,
        "setup_seconds": setup_s,
        "renders": timings,
    }))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python blender_child.py JOBDIR")
    main(sys.argv[1])
